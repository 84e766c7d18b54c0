/**
 * The pure parts of the in-place path: infect.sh's status lines, the recorded network, the
 * prepared script (verified, patched, refused when a patch cannot apply) and its summary rows.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseInfectStatus, recordedAddresses } from '../../src/phases/infect';
import { prepareInfect } from '../../src/infect/script';
import { infectRows, renderMarkdown } from '../../src/report/render';

const STANDIN = join(__dirname, '..', '..', 'test', 'standins', 'nixos-infect');
const dir = mkdtempSync(join(tmpdir(), 'infect-phase-'));
const log = () => undefined;

describe('parseInfectStatus', () => {
  it('reads a finished run', () => {
    const st = parseInfectStatus(
      'state=finished\nexit=0\nboot_id=b1\ncurrent_boot_id=b2\nlog_bytes=1234\nscript_sha256=ab\nstarted=100\nfinished=160\n',
    );
    expect(st).toEqual({
      state: 'finished',
      exit: 0,
      bootId: 'b1',
      currentBootId: 'b2',
      logBytes: 1234,
      scriptSha256: 'ab',
      started: 100,
      finished: 160,
      pid: undefined,
    });
  });
  it('reads a running one and treats garbage as none', () => {
    expect(parseInfectStatus('state=running\npid=42\ncurrent_boot_id=b\n')).toMatchObject({
      state: 'running',
      pid: 42,
      exit: undefined,
    });
    expect(parseInfectStatus('bash: sh: not found').state).toBe('none');
  });
});

describe('recordedAddresses', () => {
  it('takes the addresses section only', () => {
    const net = [
      '# addresses (ip -o addr show scope global)',
      'eth0 inet 10.77.3.2/24',
      'eth0 inet6 fd7a:7e57:0:3::2/64',
      '# IPv4 routes',
      'default via 10.77.3.1 dev eth0',
      '# DNS (/etc/resolv.conf)',
      'nameserver 10.77.3.1',
    ].join('\n');
    expect(recordedAddresses(net)).toEqual(['10.77.3.2/24', 'fd7a:7e57:0:3::2/64']);
    expect(recordedAddresses('')).toEqual([]);
  });
});

describe('prepareInfect (the stand-in, read as a local file)', () => {
  it('verifies, patches and hashes what is uploaded', async () => {
    const p = await prepareInfect({
      url: STANDIN,
      revision: 'a'.repeat(40),
      channel: 'nixos-unstable',
      downloadDir: join(dir, 'ok'),
      log,
    });
    expect(p.patches.map((x) => [x.id, x.applied])).toEqual([
      ['tmp-on-disk', true],
      ['do-net-conf', true],
      ['nix-channel', true],
    ]);
    expect(p.text).toContain("export NIX_CHANNEL='nixos-unstable'");
    expect(p.text).toContain('mktemp /var/tmp/nixos-infect.XXXXX.swp');
    expect(p.sha256).toBe(createHash('sha256').update(p.text).digest('hex'));
    expect(p.sha256).not.toBe(p.source.sha256);
    expect(p.revision).toBeUndefined();
    const rows = infectRows(p);
    expect(rows.find((r) => r[0] === 'Patch tmp-on-disk')?.[1]).toMatch(/^applied: .*\/var\/tmp/);
    expect(rows.find((r) => r[0] === 'Channel')?.[1]).toBe('nixos-unstable');
    expect(rows.find((r) => r[0] === 'sha256')?.[1]).toContain(p.source.sha256);
  });
  it('shows revision, checksum, patches and phase timings in the job summary', async () => {
    const p = await prepareInfect({
      url: STANDIN,
      revision: 'a'.repeat(40),
      channel: 'nixos-25.11',
      sha256: createHash('sha256').update(readFileSync(STANDIN)).digest('hex'),
      downloadDir: join(dir, 'md'),
      log,
    });
    const infect = {
      source: p.source,
      revision: 'b'.repeat(40),
      channel: p.channel,
      sha256: p.sha256,
      patches: p.patches,
    };
    const md = renderMarkdown({
      stages: [],
      bootstrap: {
        phases: [
          { name: 'prep', status: 'done', seconds: 12.34 },
          { name: 'infect', status: 'done', seconds: 61.5, detail: 'nixos-infect finished' },
          { name: 'reboot', status: 'done', seconds: 30 },
        ],
        host: { isNixos: true, currentSystem: null, bootId: 'b2', variantId: '' },
        bytesSent: 14_000,
        warnings: [],
        infect,
      },
    });
    expect(md).toContain(`| Revision | ${'b'.repeat(40)} |`);
    expect(md).toContain(`| sha256 | ${p.source.sha256} (checked on the runner`);
    expect(md).toMatch(/\| Patch tmp-on-disk \| applied: swapfile and temp files in \/var\/tmp/);
    expect(md).toMatch(/\| Patch do-net-conf \| applied: doNetConf=y/);
    expect(md).toContain('| Patch nix-channel | applied: NIX_CHANNEL=nixos-25.11 |');
    expect(md).toContain('| infect | done | 61.5 s |');
  });
  it('refuses a script whose swapfile line moved (it would run unpatched)', async () => {
    const f = join(dir, 'no-anchor');
    writeFileSync(f, '#!/bin/sh\necho "$doNetConf $NIX_CHANNEL"\nswapon /swap\n');
    await expect(
      prepareInfect({
        url: f,
        revision: 'a'.repeat(40),
        channel: 'nixos-25.11',
        downloadDir: join(dir, 'bad'),
        log,
      }),
    ).rejects.toThrow(/cannot be patched as it must be: tmp-on-disk .*nothing was uploaded/);
  });
});
