/**
 * Does the kexec installer fit this host's RAM? Two limits, both before anything changes:
 * - loading: kexec_load / kexec_file_load refuse images whose segments (kernel + initrd) exceed
 *   half of the RAM (EINVAL, nothing more said);
 * - booting: the initrd is unpacked into the root tmpfs while its compressed copy is still in
 *   memory, and the kernel needs room of its own on top.
 * The root tmpfs is capped at half the RAM (90 % with initramfs_options=). Over that cap, an
 * installer whose `run` knows it boots with `rootfstype=ramfs` instead: no cap, but its files
 * can never go to zram, so the install must fit beside them.
 * Pure.
 */
import { formatBytes } from '../size';
import type { KexecSizes } from '../nix/kexec';
import type { InstallerRootfs, Refusal } from './plan';

/** What the booting kernel itself keeps (page tables, slab, the unpacker's buffers): a margin. */
export const KERNEL_RESERVE_BYTES = 64 * 2 ** 20;

/**
 * What the install needs beside a ramfs root that zram cannot shrink: systemd, udevd, journald,
 * networkd and sshd resident, then mkfs, the tar|zstd stream and the closure's own Nix
 * registering it (measured on the stand-in at 512 MiB: about 80 MiB above the unpacked initrd,
 * part of it anonymous memory zram does take).
 */
export const RAMFS_INSTALL_BYTES = 64 * 2 ** 20;

export interface InstallerInfo {
  /** Where it came from (ours, the kexec-tarball file or URL), for messages. */
  from: string;
  sizes?: KexecSizes;
  sizesProblem?: string;
}

const FIX =
  'use a smaller installer (ours: leave kexec-tarball empty; or a variant with fewer tools and modules), a VPS with more RAM, or method infect (converts in place, no kexec)';

export function installerFit(
  installer: InstallerInfo,
  memTotalBytes: number,
): { refusal?: Refusal; warnings: string[]; rootfs?: InstallerRootfs } {
  const mem = `MemTotal ${formatBytes(memTotalBytes)}`;
  const s = installer.sizes;
  if (!s)
    return {
      refusal: {
        reason: `the kexec installer (${installer.from}) cannot be checked against this host's RAM: ${installer.sizesProblem ?? 'its sizes are unknown'}`,
        remediation:
          'give a kexec tarball in the nixos-images layout (kexec/run, kexec/bzImage, kexec/initrd), or leave kexec-tarball empty to use ours',
      },
      warnings: [],
    };
  const image = s.kernelBytes + s.initrdBytes;
  const half = Math.floor(memTotalBytes / 2);
  if (image > half)
    return {
      refusal: {
        reason: `the kexec installer (${installer.from}) is too big to load: kernel ${formatBytes(s.kernelBytes)} + initrd ${formatBytes(s.initrdBytes)} = ${formatBytes(image)}, over half of ${mem} (${formatBytes(half)}); the kernel refuses larger kexec images (EINVAL)`,
        remediation: FIX,
      },
      warnings: [],
    };
  if (s.initrdUnpackedBytes === undefined)
    return {
      warnings: [
        `the kexec installer's unpacked initrd size is unknown (${installer.from} has no sizes.env with INITRD_UNPACKED_BYTES): only the load limit was checked (kernel + initrd ${formatBytes(image)} ≤ half of ${mem}); at boot the initrd is unpacked into RAM next to its ${formatBytes(s.initrdBytes)} compressed copy`,
      ],
    };
  // The initrd unpacks into the kernel's rootfs, a tmpfs capped at half the RAM unless the kernel
  // takes initramfs_options= (measured here: a 192 MiB initrd at MemTotal 457 MiB on Linux 6.1
  // printed "Initramfs unpacking failed: write error" and lost the carried keys and network).
  const cap = Math.floor(memTotalBytes * (s.rootfsGrows ? 0.9 : 0.5));
  const capText = `${s.rootfsGrows ? '90 %' : 'half'} of ${mem} (${formatBytes(cap)})`;
  // Over the cap, an installer whose run knows it boots on ramfs: no cap, no zram for its files.
  const ramfs = s.initrdUnpackedBytes > cap;
  const warnings: string[] = [];
  if (ramfs) {
    if (!s.rootfsRamfs)
      return {
        refusal: {
          reason: `the kexec installer (${installer.from}) cannot unpack at boot: its initrd is ${formatBytes(s.initrdUnpackedBytes)} unpacked, over the kernel's rootfs cap of ${capText}${s.rootfsGrows ? '' : '; its kernel does not take initramfs_options= (sizes.env INITRAMFS_OPTIONS), which would raise the cap'}`,
          remediation: FIX,
        },
        warnings: [],
      };
    const need = s.initrdUnpackedBytes + KERNEL_RESERVE_BYTES + RAMFS_INSTALL_BYTES;
    if (need > memTotalBytes)
      return {
        refusal: {
          reason: `the kexec installer (${installer.from}) leaves no room to install: its initrd is ${formatBytes(s.initrdUnpackedBytes)} unpacked, over the tmpfs cap of ${capText}, so it would boot on ramfs, which zram cannot shrink; with ${formatBytes(KERNEL_RESERVE_BYTES)} for the kernel and ${formatBytes(RAMFS_INSTALL_BYTES)} for the install that is ${formatBytes(need)}, over ${mem}`,
          remediation: FIX,
        },
        warnings: [],
      };
    warnings.push(
      `the kexec installer's initrd (${formatBytes(s.initrdUnpackedBytes)} unpacked) is over the tmpfs cap of ${capText}: it boots with rootfstype=ramfs, so its files stay in RAM (zram cannot take them) and ${formatBytes(memTotalBytes - s.initrdUnpackedBytes)} is left for the kernel and the install`,
    );
  }
  const boot = s.initrdBytes + s.initrdUnpackedBytes + KERNEL_RESERVE_BYTES;
  if (boot > memTotalBytes)
    return {
      refusal: {
        reason: `the kexec installer (${installer.from}) does not fit in RAM at boot: its initrd ${formatBytes(s.initrdBytes)} compressed + ${formatBytes(s.initrdUnpackedBytes)} unpacked + ${formatBytes(KERNEL_RESERVE_BYTES)} for the kernel = ${formatBytes(boot)}, over ${mem}`,
        remediation: FIX,
      },
      warnings: [],
    };
  return ramfs ? { warnings, rootfs: 'ramfs' } : { warnings };
}
