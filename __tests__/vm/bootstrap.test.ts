/**
 * The bootstrap on one real 1 GB QEMU test VPS (no swap, /tmp a 64 MB tmpfs, cpio missing, a
 * static address, an apt repository inside the test network), through the built CLI as users run
 * it. Stand-ins (ballast 0): installer tarball, toplevel (it carries its root, Nix and boot loader), disk script (see
 * test/STANDINS.md); SSH, upload, kexec, zram, partitioning, the store copy and reboots are real.
 * The VM is snapshotted fresh at the start; the interruption chain restores that snapshot.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprint } from '../../src/ssh/hostkeys';
import { runPhases, type PhaseLogger } from '../../src/phases/phase';
import { prepPhase, type PrepContext } from '../../src/phases/prep';
import { whoAnswers } from '../../src/phases/wait';
import { kexecPhase, type KexecContext } from '../../src/phases/kexec';
import { currentVps, freshVm, openVps, standins, vpsConfig, withVps } from '../helpers/vps';
import { runCli, type CliResult } from '../helpers/cli';
import { runStep } from '../helpers/action';

jest.setTimeout(15 * 60_000);
const vps = currentVps();
const cfg = vpsConfig(vps);
const s = standins();
const VPS = join(__dirname, '../../test/vps/vps');
const lines: string[] = [];
const log: PhaseLogger = {
  info: (l) => lines.push(l),
  warn: (l) => lines.push(l),
  group: (_t, fn) => fn(),
};

const open = () => openVps(cfg);
/** One command on the VPS over a fresh pinned session. */
const onVps = (cmd: string) => withVps(cfg, (s) => s.exec(cmd, { timeoutMs: 60_000 }));
const harness = (...args: string[]) =>
  execFileSync(VPS, [...args, '--run-dir', vps.runDir], { stdio: ['ignore', 'pipe', 'inherit'] });

interface BootstrapDoc {
  phases: {
    name: string;
    status: string;
    seconds: number;
    detail?: string;
    peakMemBytes?: number;
    bytesSent?: number;
  }[];
  host: {
    isNixos: boolean;
    currentSystem: string | null;
    bootId: string;
    variantId: string;
  } | null;
  hostKey?: string;
  error?: { message: string; fix?: string };
}
const BASE = [
  'bootstrap',
  '--target',
  vps.target,
  '--ssh-private-key-file',
  vps.sshPrivateKeyFile,
  '--known-hosts-file',
  vps.knownHostsFile,
  '--kexec-tarball',
  s.kexecTarball,
  '--toplevel',
  s.toplevel,
  '--disk-script',
  s.diskScript,
  '--json',
];
const bootstrap = (extra: string[], opts: { killOn?: RegExp } = {}) =>
  runCli([...BASE, ...extra], { timeoutMs: 12 * 60_000, ...opts });
const doc = (r: CliResult) => JSON.parse(r.stdout) as BootstrapDoc;
const statuses = (d: BootstrapDoc) => Object.fromEntries(d.phases.map((p) => [p.name, p.status]));
const report = (title: string, d: BootstrapDoc) =>
  process.stderr.write(
    `${title}:\n${d.phases.map((p) => `  ${p.name} ${p.status} ${p.seconds.toFixed(1)} s peak ${((p.peakMemBytes ?? 0) / 2 ** 20).toFixed(0)} MiB sent ${p.bytesSent ?? 0} B`).join('\n')}\n`,
  );
/** The action's main step with the same inputs as the CLI runs. */
const actionInputs = (extra: Record<string, string>) => ({
  target: vps.target,
  'ssh-private-key': readFileSync(vps.sshPrivateKeyFile, 'utf8'),
  'known-hosts': readFileSync(vps.knownHostsFile, 'utf8'),
  'kexec-tarball': s.kexecTarball,
  toplevel: s.toplevel,
  'disk-script': s.diskScript,
  ...extra,
});

beforeAll(() => {
  freshVm(vps);
});

describe('nothing is touched without the right confirm-wipe', () => {
  it.each([
    [[], /confirm-wipe.*is required/],
    [['--confirm-wipe', '/dev/vdb'], /names \/dev\/vdb, which is not a disk of this host/],
    [['--confirm-wipe', '/dev/vda1'], /a partition of \/dev\/vda/],
  ])('%j is refused before the first phase', async (extra, message) => {
    const before = await whoAnswers(await open());
    const r = await bootstrap(extra as string[]);
    expect(r.code).not.toBe(0);
    const d = doc(r);
    expect(d.error?.message).toMatch(message);
    expect(d.phases).toEqual([]);
    expect(r.stderr).toMatch(/fix: .*the probe found \/dev\/vda \(4\.0 GiB\)/);
    const after = await onVps(
      'cat /proc/sys/kernel/random/boot_id; command -v cpio || echo no-cpio; cat /proc/swaps | wc -l',
    );
    expect(after.stdout.split('\n').slice(0, 3)).toEqual([before.bootId, 'no-cpio', '1']);
  });
});

/** A tarball in the installer layout whose `run` returns without loading anything. */
function inertTarball(): { path: string; sha256: string; bytes: number } {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-inert-'));
  mkdirSync(join(dir, 'kexec'));
  writeFileSync(join(dir, 'kexec/run'), '#!/bin/sh\necho "loads nothing"\n', { mode: 0o755 });
  execFileSync('tar', ['-C', dir, '-cf', join(dir, 'inert.tar'), 'kexec']);
  const data = readFileSync(join(dir, 'inert.tar'));
  return {
    path: join(dir, 'inert.tar'),
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: data.length,
  };
}

describe('the action refuses the same way', () => {
  it('fails with the confirm-wipe message in the summary and touches nothing', async () => {
    const before = await whoAnswers(await open());
    const r = runStep('main', actionInputs({ 'confirm-wipe': '/dev/vdb' }), {}, undefined, 120_000);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/::error::.*confirm-wipe.*names \/dev\/vdb/);
    expect(r.summary).toMatch(
      /\[!CAUTION\]\n> input &#39;confirm-wipe&#39;|\[!CAUTION\]\n> input 'confirm-wipe'/,
    );
    expect(r.outputs.method).toBe('kexec');
    expect((await whoAnswers(await open())).bootId).toBe(before.bootId);
    expect(
      runStep('post', {}, { 'STATE_vps-nixos-key-dir': r.state['vps-nixos-key-dir']! }).code,
    ).toBe(0);
  });
});

describe('kexec failures on the distro are diagnosed, and leave the disk alone', () => {
  const ctxFor = async (t: {
    path: string;
    sha256: string;
    bytes: number;
  }): Promise<KexecContext> => ({
    session: await open(),
    reconnect: open,
    tarball: { ...t, source: 'file', from: t.path },
    log: (l) => lines.push(l),
    pollMs: 1000,
    oldSystemGraceMs: 8000,
  });
  it('says the kexec did not take when the old system keeps answering', async () => {
    const ctx = await ctxFor(inertTarball());
    const before = await whoAnswers(ctx.session);
    const r = await runPhases([kexecPhase], ctx, log);
    expect(r.records[0]!.status).toBe('failed');
    expect(r.records[0]!.detail).toMatch(
      /kexec did not take: \d+ s after loading the installer the old system still answers/,
    );
    expect((await whoAnswers(await open())).bootId).toBe(before.bootId);
  });
  it('refuses an upload whose sha256 is not the one given, naming both', async () => {
    const t = inertTarball();
    const ctx = await ctxFor({ ...t, sha256: 'a'.repeat(64) });
    const r = await runPhases([kexecPhase], ctx, log);
    expect(r.records[0]!.status).toBe('failed');
    expect(r.records[0]!.detail).toContain(
      `the upload has sha256 ${t.sha256}, expected ${'a'.repeat(64)}`,
    );
    ctx.session.close();
  });
});

describe('prep on the distro', () => {
  it('never puts a swapfile on the tmpfs /tmp', async () => {
    const session = await open();
    const ctx: PrepContext = {
      session,
      plan: { zramBytes: 0, swapfileBytes: 64 * 2 ** 20 },
      swapfilePath: '/tmp/vps-nixos.swap',
      isContainer: false,
      log: (l) => lines.push(l),
    };
    const r = await runPhases([prepPhase], ctx, log);
    expect(r.records[0]!.status).toBe('done');
    expect(r.records[0]!.detail).toMatch(/swapfile none/);
    expect(lines.join('\n')).toMatch(/no swapfile: \/tmp is on tmpfs/);
    expect((await session.exec('cat /proc/swaps')).stdout).not.toMatch(/\/tmp\//);
    expect((await session.exec('test -e /tmp/vps-nixos.swap')).code).not.toBe(0);
    session.close();
  });
});

// The whole install in one run (distro → kexec → installer → partitioned → installed →
// rebooted), through the action entry, then no change, a change and a rollback: the end to end,
// test/e2e/run.sh, which npm test runs after this suite on a VPS of its own.

/**
 * The installer as the kexec left it (the initrd-only installer, issue 17): it answers with the
 * pinned host key at the same addresses, its root is the initramfs, it holds no Nix, its swap is
 * zram, and every command our remote scripts and a disk script run is there
 * (scripts/installer-tools.txt).
 */
async function checkInstaller(): Promise<void> {
  const tools = readFileSync(join(__dirname, '../../scripts/installer-tools.txt'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const probe = [
    '. /etc/os-release; echo "$ID/$VARIANT_ID"',
    'findmnt -no FSTYPE /',
    'stat -c %U:%a /',
    'readlink /proc/1/exe',
    'command -v nix-store nix || echo no-nix',
    'swapon --show=NAME --noheadings | grep -c zram',
    'stat -c %a /etc/machine-id',
    `m=; for spec in ${tools.map((t) => `'${t}'`).join(' ')}; do f=; for c in $(echo "$spec" | tr '|' ' '); do command -v "$c" >/dev/null && f=1; done; [ -n "$f" ] || m="$m $spec"; done; echo "missing:$m"`,
    `ip -br addr show | awk '$3 ~ /^${vps.address.replaceAll('.', '\\.')}\\// { print "same-ipv4" }'`,
    'ip -6 route show default | grep -c via',
  ].join('\n');
  const r = await onVps(probe);
  expect(r.stdout.split('\n').slice(0, 10)).toEqual([
    'nixos/installer',
    'rootfs', // no switch_root: the root is the initramfs
    'root:755',
    '/usr/lib/systemd/systemd',
    'no-nix',
    '1',
    '444', // the carried machine-id, readable by networkd
    'missing:',
    'same-ipv4',
    '1', // the IPv6 default route carried
  ]);
}

describe('interrupted anywhere, a re-run resumes and finishes (fresh snapshot)', () => {
  it('kill after prep, mid-upload, after kexec, after installer-prep, after install: each re-run picks up', async () => {
    harness('loadvm', 'fresh');
    // [kill when stderr matches, phases the run must find done (skipped), phases it must not run,
    //  what to check on the host once it is killed]
    const kills: [RegExp, string[], string[], (() => Promise<void>)?][] = [
      [/prep: done in/, [], []],
      [/uploading [\d.]+ MiB to/, ['prep'], []],
      [/kexec: done in/, ['prep'], [], checkInstaller],
      [/installer-prep: done in/, [], ['prep', 'kexec']],
      [/install: done in/, ['installer-prep'], ['prep', 'kexec']],
    ];
    for (const [killOn, skipped, absent, check] of kills) {
      const r = await bootstrap(['--confirm-wipe', '/dev/vda'], { killOn });
      // A run that ended on its own says why.
      if (r.code !== -9)
        throw new Error(`killOn ${killOn}: exit ${r.code}, not killed:\n${r.stderr.slice(-2000)}`);
      // What the killed run found already done: skipped, with its evidence; earlier phases not planned.
      for (const phase of skipped)
        expect(r.stderr).toMatch(new RegExp(`\\n${phase}: already done \\(`));
      for (const phase of absent) expect(r.stderr).not.toMatch(new RegExp(`── phase ${phase}\\n`));
      await check?.();
    }
    const r = await bootstrap(['--confirm-wipe', '/dev/vda']);
    const d = doc(r);
    report('resumed after the last kill', d);
    expect(r.code).toBe(0);
    expect(statuses(d)).toEqual({
      'installer-prep': 'skipped',
      install: 'skipped',
      reboot: 'done',
    });
    expect(d.host).toMatchObject({ isNixos: true, currentSystem: s.toplevel });
    const session = await open();
    expect(fingerprint(session.hostKey.blob)).toBe(vps.hostKeyFingerprint);
    session.close();
  });

  it('a second run does nothing but say the host is installed', async () => {
    const r = await bootstrap(['--confirm-wipe', '/dev/vda']);
    const d = doc(r);
    expect(r.code).toBe(0);
    expect(d.phases).toEqual([]);
    expect(d.host).toMatchObject({ isNixos: true, currentSystem: s.toplevel });
    expect(r.stderr).toMatch(/nothing to bootstrap: the host runs NixOS \/nix\/store\/.*standin/);
  });
});
