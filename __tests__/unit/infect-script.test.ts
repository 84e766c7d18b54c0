/**
 * patchInfectScript on a text shaped like nixos-infect (written for this test, not copied): the
 * swapfile moved off /tmp, doNetConf and NIX_CHANNEL set after the shebang, missing anchors
 * reported instead of silently skipped.
 */
import {
  INFECT_DEFAULT_REVISION,
  INFECT_DEFAULT_SHA256,
  INFECT_DEFAULT_URL,
  type InfectPatch,
  PATCH_MARKER,
  infectRawUrl,
  patchInfectScript,
  unappliedPatches,
} from '../../src/infect/script';
import { InputError } from '../../src/errors';

const FIXTURE = `#! /usr/bin/env bash
# fixture shaped like nixos-infect; /tmp in a comment is not a use
set -e -o pipefail

writeNet() {
  [[ -n "$doNetConf" ]] && echo networking
}

swapOn() {
  f=$(mktemp /tmp/nixos-infect.XXXXX.swp)
  dd if=/dev/zero "of=$f" bs=1M count=1024
  swapon -v "$f"
}

swapOff() {
  swapoff -a
  rm -vf /tmp/nixos-infect.*.swp
}

channel() {
  [[ -z "$NIX_CHANNEL" ]] && NIX_CHANNEL="nixos-25.11"
  nix-channel --add "https://nixos.org/channels/$NIX_CHANNEL" nixos
}

keep=/var/tmp/nixos-infect.keep
swapOn
writeNet
channel
swapOff
[[ -z "$NO_REBOOT" ]] && reboot
`;

const byId = (patches: InfectPatch[], id: InfectPatch['id']) => patches.find((p) => p.id === id);

describe('pinned default', () => {
  it('is a full commit SHA, its raw URL and a sha256', () => {
    expect(INFECT_DEFAULT_REVISION).toMatch(/^[0-9a-f]{40}$/);
    expect(INFECT_DEFAULT_SHA256).toMatch(/^[0-9a-f]{64}$/);
    expect(INFECT_DEFAULT_URL).toBe(
      `https://raw.githubusercontent.com/elitak/nixos-infect/${INFECT_DEFAULT_REVISION}/nixos-infect`,
    );
    expect(infectRawUrl('abc')).toContain('/elitak/nixos-infect/abc/nixos-infect');
  });
});

describe('patchInfectScript', () => {
  it('applies all three patches to a script with the anchors', () => {
    const r = patchInfectScript(FIXTURE, { channel: 'nixos-unstable' });
    expect(r.patches.map((p) => [p.id, p.applied])).toEqual([
      ['tmp-on-disk', true],
      ['do-net-conf', true],
      ['nix-channel', true],
    ]);
    expect(unappliedPatches(r.patches)).toBe('');
    expect(r.text).toContain('f=$(mktemp /var/tmp/nixos-infect.XXXXX.swp)');
    expect(r.text).toContain('rm -vf /var/tmp/nixos-infect.*.swp');
    // already on /var/tmp: not doubled
    expect(r.text).toContain('keep=/var/tmp/nixos-infect.keep');
    expect(r.text).not.toContain('/var/var/tmp');
    // the comment is left alone
    expect(r.text).toContain('/tmp in a comment');
    expect(byId(r.patches, 'nix-channel')?.what).toBe('NIX_CHANNEL=nixos-unstable');
  });

  it('sets the variables in a block right after the shebang', () => {
    const lines = patchInfectScript(FIXTURE, { channel: 'nixos-25.11' }).text.split('\n');
    expect(lines[0]).toBe('#! /usr/bin/env bash');
    expect(lines[1]).toContain(PATCH_MARKER);
    const block = lines.slice(1, lines.indexOf('# --- end of vps-nixos patches ---'));
    expect(block).toEqual(
      expect.arrayContaining([
        'export doNetConf=y',
        "export NIX_CHANNEL='nixos-25.11'",
        "export TMPDIR='/var/tmp'",
        "mkdir -p '/var/tmp'",
      ]),
    );
    // the rest of the script is unchanged after the block
    expect(lines.indexOf('set -e -o pipefail')).toBeGreaterThan(block.length);
  });

  it('uses another on-disk directory when asked', () => {
    const r = patchInfectScript(FIXTURE, { channel: 'nixos-25.11', tmpDir: '/srv/scratch/' });
    expect(r.text).toContain('mktemp /srv/scratch/nixos-infect.XXXXX.swp');
    expect(r.text).toContain("export TMPDIR='/srv/scratch'");
  });

  it('reports a missing swapfile anchor', () => {
    const text = FIXTURE.replace('mktemp /tmp/nixos-infect.XXXXX.swp', 'mktemp -p /swaps x.XXXX');
    const r = patchInfectScript(text, { channel: 'nixos-25.11' });
    const p = byId(r.patches, 'tmp-on-disk');
    expect(p).toMatchObject({ applied: false });
    expect(p?.why).toMatch(/mktemp \/tmp\/nixos-infect/);
    expect(unappliedPatches(r.patches)).toMatch(/^tmp-on-disk \(/);
  });

  it('reports a /tmp use the rewrite does not cover, with its line', () => {
    const text = FIXTURE.replace('swapoff -a', 'swapoff -a\n  rm -f /tmp/other.log');
    const p = byId(patchInfectScript(text, { channel: 'nixos-25.11' }).patches, 'tmp-on-disk');
    expect(p?.applied).toBe(false);
    expect(p?.why).toMatch(/line \d+ still uses \/tmp: rm -f \/tmp\/other\.log/);
  });

  it('reports a script that no longer reads doNetConf or NIX_CHANNEL', () => {
    const text = FIXTURE.replace('"$doNetConf"', '"$netConf"').replace(
      /\$NIX_CHANNEL/g,
      '$CHANNEL',
    );
    const r = patchInfectScript(text, { channel: 'nixos-25.11' });
    expect(byId(r.patches, 'do-net-conf')).toMatchObject({
      applied: false,
      why: 'the script never reads $doNetConf',
    });
    expect(byId(r.patches, 'nix-channel')).toMatchObject({
      applied: false,
      why: 'the script never reads $NIX_CHANNEL',
    });
    expect(byId(r.patches, 'tmp-on-disk')?.applied).toBe(true);
  });

  it('does not count anchors that only appear in comments', () => {
    const text = '#!/bin/sh\n# mktemp /tmp/nixos-infect.X\n# $doNetConf $NIX_CHANNEL\necho hi\n';
    const r = patchInfectScript(text, { channel: 'nixos-25.11' });
    expect(r.patches.every((p) => !p.applied)).toBe(true);
  });

  it('puts the block first when there is no shebang', () => {
    const r = patchInfectScript('echo $doNetConf\n', { channel: 'nixos-25.11' });
    expect(r.text.startsWith(PATCH_MARKER)).toBe(true);
  });

  it('refuses a channel that is not a name', () => {
    expect(() => patchInfectScript(FIXTURE, { channel: "x'; rm -rf /" })).toThrow(InputError);
    expect(() => patchInfectScript(FIXTURE, { channel: '' })).toThrow(/nixos-channel/);
  });

  it('refuses a tmpDir on /tmp or relative', () => {
    expect(() => patchInfectScript(FIXTURE, { channel: 'nixos-25.11', tmpDir: '/tmp' })).toThrow();
    expect(() =>
      patchInfectScript(FIXTURE, { channel: 'nixos-25.11', tmpDir: '/tmp/x' }),
    ).toThrow();
    expect(() =>
      patchInfectScript(FIXTURE, { channel: 'nixos-25.11', tmpDir: 'var/tmp' }),
    ).toThrow();
  });
});
