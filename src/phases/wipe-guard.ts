/** Before anything wipes a disk: the user named it, the host has it, the disk script formats it. Pure. */
import { InputError } from '../errors';
import type { DiskFacts } from '../probe/facts';
import { formatBytes } from '../size';

/** Whole-disk device names a disk script mentions (partition and by-partlabel paths left out). */
export function diskDevicesIn(scriptText: string): { disks: string[]; byId: string[] } {
  const disks = new Set<string>();
  const byId = new Set<string>();
  const re =
    /\/dev\/(?:disk\/by-(?:id|path)\/[^\s'"`;)|]+|(?:sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+)(?![0-9a-z])|nvme\d+n\d+(?!p)|mmcblk\d+(?!p))/g;
  for (const m of scriptText.matchAll(re)) {
    const dev = m[0];
    if (dev.startsWith('/dev/disk/')) {
      if (!/-part\d+$/.test(dev)) byId.add(dev);
    } else disks.add(dev);
  }
  return { disks: [...disks].sort(), byId: [...byId].sort() };
}

const found = (disks: DiskFacts[]) =>
  disks.length
    ? disks.map((d) => `${d.path} (${formatBytes(d.sizeBytes)})`).join(', ')
    : 'no disks';

/**
 * Throws an InputError unless `confirmWipe` names a whole disk of this host that the disk script
 * formats. Returns a warning when the script names its disk only by id (we cannot map that).
 */
export function checkWipe(
  confirmWipe: string | undefined,
  disks: DiskFacts[],
  scriptText?: string,
): { disk: DiskFacts; warning?: string } {
  if (!confirmWipe)
    throw new InputError(
      'confirm-wipe',
      'is required: the install wipes a disk, and nothing is wiped without naming it',
      `set confirm-wipe to the disk to wipe; the probe found ${found(disks)}`,
    );
  const disk = disks.find((d) => d.path === confirmWipe);
  if (!disk) {
    const part = disks.find((d) => d.partitions.some((p) => p.path === confirmWipe));
    throw new InputError(
      'confirm-wipe',
      part
        ? `names ${confirmWipe}, a partition of ${part.path}: the disk script wipes whole disks`
        : `names ${confirmWipe}, which is not a disk of this host`,
      `the probe found ${found(disks)}; name the one the disk script formats`,
    );
  }
  if (scriptText === undefined) return { disk };
  const inScript = diskDevicesIn(scriptText);
  if (inScript.disks.includes(confirmWipe)) return { disk };
  if (inScript.disks.length > 0)
    throw new InputError(
      'confirm-wipe',
      `names ${confirmWipe}, but the disk script formats ${inScript.disks.join(', ')}`,
      `set disko.devices.disk.<name>.device = "${confirmWipe}" in the configuration, or confirm the disk the script formats`,
    );
  return {
    disk,
    warning: inScript.byId.length
      ? `the disk script names its disk by id (${inScript.byId.join(', ')}): cannot check it is ${confirmWipe}`
      : `the disk script names no disk device: cannot check it formats ${confirmWipe}`,
  };
}

/**
 * Before any connection: confirm-wipe against the disks the configuration's disko layout formats
 * (`disko.devices.disk.<name>.device`). Throws an InputError when the layout names its disks and
 * confirm-wipe is not one of them; returns a warning when it cannot tell (disks named by id) or
 * when the layout formats more disks than the one confirm-wipe names.
 */
export function checkWipeLayout(
  confirmWipe: string | undefined,
  disks: { name: string; device?: string }[],
): string | undefined {
  if (!confirmWipe || disks.length === 0) return undefined;
  const attr = (name: string) => (/^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) ? name : `"${name}"`);
  const show = (d: { name: string; device?: string }) =>
    `${d.device ?? '(no device)'} (disko.devices.disk.${attr(d.name)})`;
  const named = disks.filter((d) => d.device === confirmWipe);
  if (named.length > 0) {
    const others = disks.filter((d) => d.device !== confirmWipe);
    return others.length
      ? `the disko layout also formats ${others.map(show).join(', ')}: confirm-wipe names only ${confirmWipe}, but the install wipes those too`
      : undefined;
  }
  const plain = disks.filter((d) => d.device && !d.device.startsWith('/dev/disk/'));
  if (plain.length > 0) {
    const first = plain[0]!;
    throw new InputError(
      'confirm-wipe',
      `names ${confirmWipe}, but the configuration's disko layout formats ${disks.map(show).join(', ')}`,
      `set confirm-wipe to ${first.device} if that is the disk to wipe, or set disko.devices.disk.${attr(first.name)}.device = "${confirmWipe}" in the configuration; leave confirm-wipe empty when nothing should be wiped`,
    );
  }
  return `the disko layout names its disks by id or path (${disks.map(show).join(', ')}): confirm-wipe ${confirmWipe} is checked against the probed disks and the disk script after connecting`;
}
