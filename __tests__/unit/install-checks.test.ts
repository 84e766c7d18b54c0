/**
 * What the initrd-only installer cannot do (issue 17): a closure without Nix, a disko layout it
 * cannot format, an installer over the RAM limits. Refused after the plan, only when it installs.
 */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findSystemNix, storePathOf, systemNix } from '../../src/nix/system-nix';
import { layoutRefusal, layoutTools, parseLayout, type DiskoLayout } from '../../src/nix/layout';
import {
  installerFit,
  KERNEL_RESERVE_BYTES,
  RAMFS_INSTALL_BYTES,
} from '../../src/plan/installer-fit';
import { checkInstall, type InstallFindings } from '../../src/plan/install-checks';
import { plan, type Plan, type PlanConfig, type PlanFacts } from '../../src/plan/plan';

const MiB = 2 ** 20;
const TOP = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-vps-24.11';
const NIX = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nix-2.24.10';

describe('systemNix: the closure registers itself with its own Nix', () => {
  it('finds the Nix store path behind sw/bin/nix-store (a multi-call nix binary too)', () => {
    for (const resolved of [`${NIX}/bin/nix-store`, `${NIX}/bin/nix`]) {
      expect(systemNix({ toplevel: TOP, resolved, binaries: ['nix-store', 'nix-env'] })).toEqual({
        nixStorePath: NIX,
      });
    }
  });
  it('refuses a closure without Nix, naming the option and the fix', () => {
    const r = systemNix({ toplevel: TOP, binaries: [] });
    expect(r).toHaveProperty('refusal');
    if (!('refusal' in r)) throw new Error('no refusal');
    expect(r.refusal.reason).toContain(`${TOP}/sw/bin/nix-store does not exist`);
    expect(r.refusal.reason).toMatch(/nix\.enable = false/);
    expect(r.refusal.remediation).toMatch(/nix\.enable = true.*method infect/);
  });
  it('refuses a nix-store outside the store, or a package without nix-env', () => {
    const outside = systemNix({ toplevel: TOP, resolved: '/usr/bin/nix-store', binaries: [] });
    expect('refusal' in outside && outside.refusal.reason).toMatch(/not into a Nix package/);
    const noEnv = systemNix({
      toplevel: TOP,
      resolved: `${NIX}/bin/nix-store`,
      binaries: ['nix-store'],
    });
    expect('refusal' in noEnv && noEnv.refusal.reason).toMatch(/has no bin\/nix-env/);
  });
  it('storePathOf cuts a path to its store path', () => {
    expect(storePathOf(`${NIX}/bin/nix-store`, '/nix/store')).toBe(NIX);
    expect(storePathOf('/usr/bin/x', '/nix/store')).toBeUndefined();
  });
  it('reads the links in a store (readlink -f), and says nothing about a path not in it', () => {
    const store = mkdtempSync(join(tmpdir(), 'store-'));
    const nix = join(store, 'cccccccccccccccccccccccccccccccc-nix-2.24');
    mkdirSync(join(nix, 'bin'), { recursive: true });
    writeFileSync(join(nix, 'bin', 'nix'), '');
    symlinkSync('nix', join(nix, 'bin', 'nix-store'));
    symlinkSync('nix', join(nix, 'bin', 'nix-env'));
    const sw = join(store, 'dddddddddddddddddddddddddddddddd-system-path');
    mkdirSync(join(sw, 'bin'), { recursive: true });
    symlinkSync(join(nix, 'bin', 'nix-store'), join(sw, 'bin', 'nix-store'));
    const top = join(store, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nixos-system');
    mkdirSync(top);
    symlinkSync(sw, join(top, 'sw'));
    expect(findSystemNix(top)).toEqual({ nixStorePath: nix });
    const bare = join(store, 'ffffffffffffffffffffffffffffffff-nixos-system-nonix');
    mkdirSync(join(bare, 'sw', 'bin'), { recursive: true });
    expect(findSystemNix(bare)).toHaveProperty('refusal');
    expect(findSystemNix(join(store, 'missing'))).toBeUndefined();
  });
});

// What the eval returns for disko's example layouts (abridged).
const EXT4: DiskoLayout = {
  used: ['disk', 'gpt', 'EF02', 'EF00', 'filesystem:vfat', '8300', 'filesystem:ext4'],
  disks: [{ name: 'main', device: '/dev/vda' }],
};
const ZFS: DiskoLayout = {
  used: ['disk', 'gpt', 'EF00', 'filesystem:vfat', 'BF00', 'zfs', 'zpool', 'zfs_fs'],
  disks: [{ name: 'main', device: '/dev/vda' }],
};

describe('layoutTools: what formats the layout, and what the installer cannot', () => {
  it('maps a GPT + vfat + ext4 layout to its tools, partition type codes ignored', () => {
    const t = layoutTools(EXT4);
    expect(t.unsupported).toEqual([]);
    expect(t.tools).toEqual(expect.arrayContaining(['sgdisk', 'mkfs.vfat', 'mkfs.ext4', 'jq']));
    expect(t.tools).not.toContain('mkfs.btrfs');
  });
  it('covers MBR, btrfs, xfs, swap, LVM, LUKS and mdadm', () => {
    const t = layoutTools({
      used: [
        'table:msdos',
        'btrfs',
        'btrfs_subvol',
        'filesystem:xfs',
        'swap',
        'luks',
        'lvm_pv',
        'lvm_vg',
        'mdadm',
        'mdraid',
        'nodev',
        '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
      ],
    });
    expect(t.unsupported).toEqual([]);
    expect(t.tools).toEqual(
      expect.arrayContaining(['parted', 'mkfs.btrfs', 'mkfs.xfs', 'mkswap', 'cryptsetup', 'lvm']),
    );
    expect(t.tools).toContain('mdadm');
  });
  it('names ZFS, bcachefs, other filesystems and unknown types as unsupported', () => {
    expect(layoutTools(ZFS).unsupported).toEqual(['ZFS']);
    expect(
      layoutTools({ used: ['bcachefs', 'filesystem:f2fs', 'filesystem:ext3', 'verity'] })
        .unsupported,
    ).toEqual([
      'bcachefs',
      'disko type verity',
      'filesystem format ext3',
      'filesystem format f2fs',
    ]);
  });
  it('refuses with the reason and what to do', () => {
    expect(layoutRefusal(EXT4, 'nixosConfigurations.vps')).toBeUndefined();
    const r = layoutRefusal(ZFS, 'nixosConfigurations.vps')!;
    expect(r.reason).toMatch(
      /disko layout of nixosConfigurations\.vps uses ZFS, which the kexec installer cannot format/,
    );
    expect(r.reason).toMatch(/ext4, btrfs, xfs, vfat, swap, LVM, LUKS and mdadm/);
    expect(r.remediation).toMatch(/ext4 or btrfs.*method infect/);
  });
  it('parses the eval: null is no disko, types are made unique', () => {
    expect(parseLayout('null')).toBeUndefined();
    expect(
      parseLayout(
        JSON.stringify({
          used: ['gpt', 'disk', 'gpt'],
          disks: [
            { name: 'a', device: '/dev/vda' },
            { name: 'b', device: null },
          ],
        }),
      ),
    ).toEqual({
      used: ['disk', 'gpt'],
      disks: [{ name: 'a', device: '/dev/vda' }, { name: 'b' }],
    });
  });
});

describe('installerFit: the kexec image against MemTotal', () => {
  const mem = 457 * MiB; // a 512 MB VPS
  const from = 'ours';
  it('refuses kernel + initrd over half of MemTotal (the kernel says EINVAL)', () => {
    const r = installerFit({ from, sizes: { kernelBytes: 12 * MiB, initrdBytes: 217 * MiB } }, mem);
    expect(r.refusal?.reason).toMatch(
      /kernel 12\.0 MiB \+ initrd 217\.0 MiB = 229\.0 MiB, over half of MemTotal 457\.0 MiB \(228\.5 MiB\)/,
    );
    expect(r.refusal?.remediation).toMatch(/smaller installer.*more RAM.*method infect/);
    // exactly half fits
    expect(
      installerFit({ from, sizes: { kernelBytes: 12 * MiB, initrdBytes: 216.5 * MiB } }, mem)
        .refusal,
    ).toBeUndefined();
  });
  it('refuses an unpacked initrd over the rootfs cap: half of MemTotal, 90 % with initramfs_options', () => {
    const sizes = { kernelBytes: 12 * MiB, initrdBytes: 64 * MiB, initrdUnpackedBytes: 192 * MiB };
    // a 512 MB VPS (MemTotal 457 MiB): 192 MiB fits in its half (228.5 MiB)
    expect(installerFit({ from, sizes }, mem).refusal).toBeUndefined();
    // a 384 MB VPS (MemTotal ~340 MiB): half is 170 MiB
    const r = installerFit({ from, sizes }, 340 * MiB);
    expect(r.refusal?.reason).toMatch(
      /cannot unpack at boot: its initrd is 192\.0 MiB unpacked, over the kernel's rootfs cap of half of MemTotal 340\.0 MiB \(170\.0 MiB\).*initramfs_options/,
    );
    // exactly half fits
    expect(installerFit({ from, sizes }, 384 * MiB).refusal).toBeUndefined();
    // a kernel that takes initramfs_options=size=90% unpacks it there
    expect(
      installerFit({ from, sizes: { ...sizes, rootfsGrows: true } }, 340 * MiB).refusal,
    ).toBeUndefined();
  });
  it('past the tmpfs cap, an installer whose run knows rootfstype=ramfs boots on ramfs (a 384 MB VPS)', () => {
    const sizes = {
      kernelBytes: 7.9 * MiB,
      initrdBytes: 62.4 * MiB,
      initrdUnpackedBytes: 192 * MiB,
      rootfsRamfs: true,
    };
    // the stand-in VPS at 384 MiB: MemTotal 331 MiB, tmpfs cap 165.5 MiB
    const r = installerFit({ from, sizes }, 331 * MiB);
    expect(r.refusal).toBeUndefined();
    expect(r.rootfs).toBe('ramfs');
    expect(r.warnings.join()).toMatch(
      /192\.0 MiB unpacked\) is over the tmpfs cap of half of MemTotal 331\.0 MiB \(165\.5 MiB\): it boots with rootfstype=ramfs.*zram cannot take them.*139\.0 MiB is left/,
    );
    // under the cap it stays on tmpfs, which zram can shrink: no choice made, no warning
    const big = installerFit({ from, sizes }, 457 * MiB);
    expect(big).toEqual({ warnings: [] });
    // ramfs leaves the kernel and the install too little: refused, with the sum
    const tight = 192 * MiB + KERNEL_RESERVE_BYTES + RAMFS_INSTALL_BYTES;
    expect(installerFit({ from, sizes }, tight).rootfs).toBe('ramfs');
    const no = installerFit({ from, sizes }, tight - 1);
    expect(no.rootfs).toBeUndefined();
    expect(no.refusal?.reason).toMatch(
      /leaves no room to install: its initrd is 192\.0 MiB unpacked.*would boot on ramfs.*that is 320\.0 MiB, over MemTotal/,
    );
  });
  it('refuses compressed + unpacked initrd + the kernel margin over MemTotal', () => {
    const sizes = {
      kernelBytes: 12 * MiB,
      initrdBytes: 64 * MiB,
      initrdUnpackedBytes: 192 * MiB,
      rootfsGrows: true,
    };
    expect(installerFit({ from, sizes }, mem).refusal).toBeUndefined();
    const tight = 64 * MiB + 192 * MiB + KERNEL_RESERVE_BYTES;
    expect(installerFit({ from, sizes }, tight).refusal).toBeUndefined();
    const r = installerFit({ from, sizes }, tight - 1);
    expect(r.refusal?.reason).toMatch(
      /initrd 64\.0 MiB compressed \+ 192\.0 MiB unpacked \+ 64\.0 MiB for the kernel = 320\.0 MiB, over MemTotal/,
    );
  });
  it('only warns when the unpacked size is unknown (a third-party tarball)', () => {
    const r = installerFit(
      { from: 'x.tar.gz', sizes: { kernelBytes: MiB, initrdBytes: MiB } },
      mem,
    );
    expect(r.refusal).toBeUndefined();
    expect(r.warnings.join()).toMatch(/unpacked initrd size is unknown.*only the load limit/);
  });
  it('refuses a tarball whose sizes cannot be read', () => {
    const r = installerFit({ from: 'x', sizesProblem: 'it holds no kexec/initrd' }, mem);
    expect(r.refusal?.reason).toMatch(/cannot be checked.*holds no kexec\/initrd/);
  });
});

describe('checkInstall: refuses only a plan that installs', () => {
  const cfg: PlanConfig = {
    method: 'auto',
    minRamKexecBytes: 400 * MiB,
    minRamInfectBytes: 400 * MiB,
    allowLowRam: false,
    reinstall: false,
    flake: { ref: '.', name: 'vps' },
  };
  const debian: PlanFacts = {
    memTotalBytes: 457 * MiB,
    virtualization: 'kvm',
    isNixos: false,
    osVariantId: undefined,
  };
  const noNix = systemNix({ toplevel: TOP, binaries: [] });
  const bad: InstallFindings = {
    config: 'nixosConfigurations.vps',
    systemNix: noNix,
    layout: ZFS,
    installer: { from: 'ours', sizes: { kernelBytes: 12 * MiB, initrdBytes: 250 * MiB } },
    memTotalBytes: debian.memTotalBytes,
  };
  it('a kexec install: every problem in one refusal, before any phase', () => {
    const p = checkInstall(plan(debian, cfg), bad);
    expect(p.method).toBe('refuse');
    expect(p.phases).toEqual([]);
    expect(p.refusal!.reason).toMatch(/has no Nix.*; and .*uses ZFS.*; and .*too big to load/);
    expect(p.reasons).toEqual(expect.arrayContaining([expect.stringMatching(/kvm: a full VM/)]));
  });
  it('deploy-only and infect plans do not care', () => {
    const nixos = plan({ ...debian, isNixos: true }, cfg);
    expect(checkInstall(nixos, bad)).toBe(nixos);
    const infect = plan(debian, { ...cfg, method: 'infect' });
    expect(checkInstall(infect, bad)).toBe(infect);
  });
  it('a resumed install (already in the installer) skips the RAM check, not the others', () => {
    const resumed = plan({ ...debian, isNixos: true, osVariantId: 'installer' }, cfg);
    expect(resumed.phases).not.toContain('kexec');
    const ok = checkInstall(resumed, { ...bad, systemNix: { nixStorePath: NIX }, layout: EXT4 });
    expect(ok.method).toBe('kexec');
    expect(
      checkInstall(resumed, { ...bad, systemNix: { nixStorePath: NIX } }).refusal!.reason,
    ).toMatch(/ZFS/);
  });
  it('unknown layout, toplevel or installer: the generic installer, no refusal', () => {
    const p: Plan = plan(debian, cfg);
    expect(checkInstall(p, { config: 'x', memTotalBytes: debian.memTotalBytes })).toBe(p);
  });
  it('carries the ramfs root into the plan, for the kexec phase to pass on', () => {
    const small = { ...debian, memTotalBytes: 331 * MiB };
    const p = checkInstall(plan(small, { ...cfg, minRamKexecBytes: 320 * MiB }), {
      config: 'x',
      installer: {
        from: 'ours',
        sizes: {
          kernelBytes: 8 * MiB,
          initrdBytes: 62 * MiB,
          initrdUnpackedBytes: 192 * MiB,
          rootfsRamfs: true,
        },
      },
      memTotalBytes: small.memTotalBytes,
    });
    expect(p.method).toBe('kexec');
    expect(p.installerRootfs).toBe('ramfs');
    expect(p.warnings.join()).toMatch(/rootfstype=ramfs/);
  });
  it('adds the warnings of a passing check to the plan', () => {
    const p = checkInstall(plan(debian, cfg), {
      config: 'x',
      installer: { from: 'x.tar', sizes: { kernelBytes: MiB, initrdBytes: MiB } },
      memTotalBytes: debian.memTotalBytes,
    });
    expect(p.method).toBe('kexec');
    expect(p.warnings.join()).toMatch(/unpacked initrd size is unknown/);
  });
});
