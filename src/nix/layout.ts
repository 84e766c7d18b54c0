/**
 * The configuration's disko layout, reduced to what the kexec installer must be able to do with
 * it: which node types and filesystem formats it uses (so, which tools format it) and which disks
 * it names. The installer is an initrd with a fixed set of disk tools and no Nix: a layout it
 * cannot format is refused before anything changes on the host.
 */
import type { Refusal } from '../plan/plan';
import { nixErrorText, type Nix } from './nix';

export interface DiskoLayout {
  /**
   * Every disko node type used, with its format where it has one (`filesystem:ext4`,
   * `table:msdos`, `gpt`, `zpool`, …), and GPT partition type codes (`8300`, `EF00`). Sorted, unique.
   */
  used: string[];
  /** `disko.devices.disk.<name>.device`: the disks the layout formats. */
  disks: { name: string; device?: string }[];
}

/**
 * The `--apply` function for `nix eval --json …#nixosConfigurations.NAME.config`: null without
 * disko, else the layout. It walks disko.devices and records each node's `type` (and `format`),
 * skipping disko's internal `_…` options (`_parent` points back up: walking it never ends) and
 * derivations (walking them would instantiate them).
 */
export const LAYOUT_APPLY = `c: if !(c ? disko) then null else let
  d = c.disko.devices;
  walk = v:
    if builtins.isList v then builtins.concatMap walk v
    else if !(builtins.isAttrs v) || (v.type or null) == "derivation" then [ ]
    else (if builtins.isString (v.type or null)
      then [ (v.type + (if builtins.isString (v.format or null) then ":" + v.format else "")) ]
      else [ ])
      ++ builtins.concatMap (n: if builtins.substring 0 1 n == "_" then [ ] else walk v.\${n})
        (builtins.attrNames v);
in {
  used = walk d;
  disks = map (n: { name = n; device = d.disk.\${n}.device or null; })
    (builtins.attrNames (d.disk or { }));
}`;

/** What each supported node needs in the installer (commands, as scripts/installer-tools.txt names them). */
const NODE_TOOLS: Record<string, string[]> = {
  disk: ['lsblk', 'wipefs', 'dd'],
  gpt: ['sgdisk', 'partprobe'],
  'table:gpt': ['parted', 'partprobe'],
  'table:msdos': ['parted', 'partprobe'],
  'filesystem:ext4': ['mkfs.ext4'],
  'filesystem:vfat': ['mkfs.vfat'],
  'filesystem:btrfs': ['mkfs.btrfs'],
  'filesystem:xfs': ['mkfs.xfs'],
  btrfs: ['mkfs.btrfs', 'btrfs'],
  btrfs_subvol: ['btrfs'],
  swap: ['mkswap', 'swapon'],
  luks: ['cryptsetup'],
  lvm_pv: ['lvm'],
  lvm_vg: ['lvm'],
  mdadm: ['mdadm'],
  mdraid: ['mdadm'],
  nodev: [],
};

/** Every disko script needs these, whatever the layout. */
const BASE_TOOLS = ['bash', 'jq', 'udevadm', 'mount', 'umount', 'mkdir'];

/** What the generic installer formats, for messages. */
export const SUPPORTED_LAYOUTS =
  'GPT or MBR partitions, ext4, btrfs, xfs, vfat, swap, LVM, LUKS and mdadm';

/** A GPT partition's type code (sgdisk short code or GUID), not a disko node type. */
const PARTITION_CODE = /^([0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})$/;

function family(node: string): string {
  const [type, format] = node.split(':');
  if (/^(zpool|zfs|zfs_fs|zfs_volume|topology)$/.test(type!) || format === 'zfs') return 'ZFS';
  if (/^bcachefs/.test(type!) || format === 'bcachefs') return 'bcachefs';
  return format ? `${type} format ${format}` : `disko type ${type}`;
}

/** The tools a layout needs in the installer, and what in it the installer cannot format. Pure. */
export function layoutTools(layout: Pick<DiskoLayout, 'used'>): {
  tools: string[];
  unsupported: string[];
} {
  const tools = new Set(BASE_TOOLS);
  const unsupported = new Set<string>();
  for (const node of layout.used) {
    if (PARTITION_CODE.test(node)) continue;
    const need = NODE_TOOLS[node];
    if (need) need.forEach((t) => tools.add(t));
    else unsupported.add(family(node));
  }
  return { tools: [...tools].sort(), unsupported: [...unsupported].sort() };
}

/** Why the installer cannot format this layout, and what to do; undefined when it can. Pure. */
export function layoutRefusal(layout: DiskoLayout, config: string): Refusal | undefined {
  const { unsupported } = layoutTools(layout);
  if (unsupported.length === 0) return undefined;
  return {
    reason: `the disko layout of ${config} uses ${unsupported.join(', ')}, which the kexec installer cannot format (it has no Nix to fetch more tools; it formats ${SUPPORTED_LAYOUTS})`,
    remediation: `lay the disk out with what it supports in disko.devices (e.g. ext4 or btrfs on GPT), or use method infect (converts in place on the provider's partitions; the disko layout is not used)`,
  };
}

/** Parses the eval's JSON: null (no disko) stays undefined. */
export function parseLayout(json: string): DiskoLayout | undefined {
  const v = JSON.parse(json) as {
    used: string[];
    disks: { name: string; device: string | null }[];
  } | null;
  if (!v) return undefined;
  return {
    used: [...new Set(v.used)].sort(),
    disks: v.disks.map((d) => (d.device ? { name: d.name, device: d.device } : { name: d.name })),
  };
}

/**
 * One `nix eval` of the configuration's disko layout. Undefined when the configuration has no
 * disko (the preflight's no-disko rule says what to do) or when the eval fails (then a warning:
 * the generic installer is used and the disk script's own build reports the error).
 */
export async function evalLayout(
  nix: Nix,
  configInstallable: string,
  warn: (line: string) => void,
): Promise<DiskoLayout | undefined> {
  const r = await nix.run(['eval', '--json', configInstallable, '--apply', LAYOUT_APPLY]);
  if (r.code !== 0) {
    warn(
      `could not read the disko layout (${nixErrorText(r.stderr)}): the installer's tools are not checked against it`,
    );
    return undefined;
  }
  return parseLayout(r.stdout);
}
