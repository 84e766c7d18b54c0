/** What the bootstrap checks before its first phase touches the host (the parts without a store). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootstrapPreflight, swapfileFor } from '../../src/phases/bootstrap';
import { parseFacts } from '../../src/probe/facts';
import type { KexecTarball } from '../../src/nix/kexec';
import { kexecFix } from '../../src/phases/kexec';

const MiB = 2 ** 20;
const facts = parseFacts(
  readFileSync(join(__dirname, '../fixtures/facts/debian-12-kvm.txt'), 'utf8'),
);
const tarball = (bytes: number): KexecTarball => ({
  path: '/tmp/x.tar.gz',
  sha256: 'a'.repeat(64),
  bytes,
  source: 'file',
  from: '/tmp/x.tar.gz',
});

describe('bootstrapPreflight', () => {
  it('needs an installer tarball when kexec is planned', async () => {
    await expect(bootstrapPreflight(['prep', 'kexec'], facts, {}, undefined)).rejects.toThrow(
      /needs the kexec installer tarball; nothing was changed/,
    );
  });
  it('refuses an installer larger than half the RAM (the kernel would say EINVAL)', async () => {
    const small = { ...facts, memTotalBytes: 457 * MiB };
    await expect(
      bootstrapPreflight(['kexec'], small, { kexec: tarball(300 * MiB) }, undefined),
    ).rejects.toThrow(
      /larger than half of this host's RAM \(MemTotal 457\.0 MiB\).*over 228\.5 MiB/,
    );
    await expect(
      bootstrapPreflight(['kexec'], small, { kexec: tarball(100 * MiB) }, undefined),
    ).resolves.toEqual({ warnings: [], diskBytes: undefined });
  });
  it('warns when loading would hold the installer twice in most of the RAM (measured OOM at 768)', async () => {
    const at768 = { ...facts, memTotalBytes: 708 * MiB };
    const r = await bootstrapPreflight(['kexec'], at768, { kexec: tarball(286 * MiB) }, undefined);
    expect(r.warnings.join()).toMatch(
      /holds it twice in kernel memory, 572\.0 MiB of MemTotal 708\.0 MiB/,
    );
  });
  it('refuses a root file system without room for the installer, before prep touches it', async () => {
    const full = {
      ...facts,
      root: { fsType: 'ext4', sizeBytes: 4096 * MiB, availBytes: 0, mountpoint: '/' },
    };
    await expect(
      bootstrapPreflight(['prep', 'kexec'], full, { kexec: tarball(70 * MiB) }, undefined),
    ).rejects.toThrow(
      /the root file system \(\/\) has 0 B free; the kexec phase needs 274\.0 MiB there.*nothing was changed/,
    );
    // an earlier run's upload is already in what is used: 210 MiB free + 70 MiB uploaded will do
    const resumed = { ...full, root: { ...full.root, availBytes: 210 * MiB } };
    await expect(
      bootstrapPreflight(['kexec'], resumed, { kexec: tarball(70 * MiB) }, undefined),
    ).resolves.toMatchObject({ warnings: [] });
  });
  it('needs toplevel and disk script when install is planned', async () => {
    await expect(
      bootstrapPreflight(['install'], facts, { kexec: tarball(MiB) }, '/dev/vda'),
    ).rejects.toThrow(/needs the system toplevel/);
  });
});

describe('swapfileFor', () => {
  const root = (availMiB: number) => ({
    root: { fsType: 'ext4', sizeBytes: 4096 * MiB, availBytes: availMiB * MiB, mountpoint: '/' },
  });
  const plan = { swapfileBytes: 2048 * MiB };
  const k = { kexec: tarball(365 * MiB) };
  it('keeps room on the root file system for the kexec installer', () => {
    // Bench: 1006 MiB free once a 2 GiB swapfile was made. The 365 MiB installer needs three
    // copies (tarball, unpacked kernel + initrd, the initrd copy run appends to) + 64 MiB: 1159 MiB.
    expect(swapfileFor(plan, root(3500), ['prep', 'kexec'], k)).toBe(2048 * MiB);
    expect(swapfileFor(plan, root(2000), ['prep', 'kexec'], k)).toBe((2000 - 1159 - 256) * MiB);
    expect(swapfileFor(plan, root(1100), ['prep', 'kexec'], k)).toBe(0);
  });
  it('leaves the planned size alone without kexec or facts about the root', () => {
    expect(swapfileFor(plan, root(500), ['prep', 'infect'], k)).toBe(2048 * MiB);
    expect(swapfileFor(plan, {}, ['prep', 'kexec'], k)).toBe(2048 * MiB);
  });
});

describe('kexecFix', () => {
  const ctx = { tarball: tarball(286 * MiB) };
  it('tells an OOM-killed kexec load from a refused image and a forbidden kexec', () => {
    expect(kexecFix('kexec/run failed: Killed kexec/run: kexec --load failed', ctx)).toMatch(
      /ran out of memory: kexec_load holds the 286\.0 MiB installer/,
    );
    expect(kexecFix('kexec_load failed: Invalid argument', ctx)).toMatch(/over half the RAM/);
    expect(kexecFix('kexec_file_load failed: Operation not permitted', ctx)).toMatch(/infect/);
    expect(kexecFix('something else', ctx)).toMatch(/free disk space/);
  });
});
