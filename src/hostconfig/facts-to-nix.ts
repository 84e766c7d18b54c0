/**
 * facts-to-nix: the probe's facts as a NixOS module the user commits, like nixos-anywhere's
 * `--generate-hardware-config` but with the network the provider configured statically. Pure.
 */
import type { Facts } from '../probe/facts';
import { HostConfigError } from './errors';
import { checkDiskPath } from './ip';
import { type HostNetwork, type NetworkUnit, hostNetwork } from './network';
import { nixComment, nixString, nixStringList } from './nix';

export interface FactsToNixOptions {
  /** The probed target as the user named it (`root@203.0.113.7`), for the header. */
  host?: string;
  /** When the facts were taken or the file generated (header only; omitted when absent). */
  date?: Date | string;
  /**
   * The disk is partitioned by disko (the install path): write `disko.devices.disk.main.device`
   * and leave the BIOS boot device to disko. `false`: an existing disk layout (no disko
   * import), so `boot.loader.grub.device` names the disk. Default true.
   */
  disko?: boolean;
  /** The name of the disk in the configuration's disko layout (`disko.devices.disk.<name>`); default `main`. */
  diskName?: string;
}

/** A disko disk name we write as a bare Nix attribute. */
export const DISK_NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Initrd drivers per virtualization: the root disk and NIC must work before the root is mounted. */
export const INITRD_MODULES: Readonly<Record<string, readonly string[]>> = {
  kvm: ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net'],
  qemu: ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net'],
  xen: ['xen_blkfront', 'xen_netfront'],
  microsoft: ['hv_vmbus', 'hv_storvsc', 'hv_netvsc', 'hv_utils'],
  vmware: ['ata_piix', 'mptspi', 'vmw_pvscsi', 'vmxnet3'],
};

/** Nix's system double for `uname -m`. */
const PLATFORMS: Readonly<Record<string, string>> = {
  x86_64: 'x86_64-linux',
  aarch64: 'aarch64-linux',
  arm64: 'aarch64-linux',
  i686: 'i686-linux',
  riscv64: 'riscv64-linux',
};

const WORD = /^[A-Za-z0-9._~+-]{1,64}$/;
const HOST = /^[A-Za-z0-9._:@[\]-]{1,255}$/;
const DATE = /^\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/** The initrd kernel modules facts-to-nix writes for a virtualization (none for containers). */
export function initrdModules(
  facts: Pick<Facts, 'virtualization' | 'isContainer' | 'arch'>,
): string[] {
  if (facts.isContainer) return [];
  const modules = [...(INITRD_MODULES[facts.virtualization] ?? [])];
  // ARM virt machines put virtio on MMIO rather than PCI.
  if (modules.includes('virtio_pci') && /^(aarch64|arm64)$/.test(facts.arch))
    modules.push('virtio_mmio');
  return modules;
}

/**
 * The NixOS module for the probed host, as text: static addresses, routes (on-link gateways
 * included) and DNS as systemd-networkd units matched by MAC, initrd drivers for the
 * virtualization, the boot loader for BIOS or UEFI, and the disk. Throws HostConfigError, and
 * writes nothing, when a fact from the host is not a value we will put into Nix.
 */
export function factsToNix(facts: Facts, opts: FactsToNixOptions = {}): string {
  const virt = word(facts.virtualization, 'virtualization');
  if (typeof facts.efi !== 'boolean')
    throw new HostConfigError('efi', facts.efi, 'is not true/false');
  if (typeof facts.isContainer !== 'boolean')
    throw new HostConfigError('isContainer', facts.isContainer, 'is not true/false');
  const arch = word(facts.arch, 'arch');
  const rootDisk =
    facts.rootDisk === undefined || facts.rootDisk === null
      ? undefined
      : checkDiskPath(facts.rootDisk, 'rootDisk');
  const network = hostNetwork(facts);
  const disko = opts.disko ?? true;
  const diskName = opts.diskName ?? 'main';
  // The CLI refuses a bad name as its input; this is for other callers.
  if (!DISK_NAME_RE.test(diskName)) throw new Error(`facts-to-nix: bad disk name ${diskName}`);

  const sections = [
    header(facts, opts, { virt, arch, rootDisk }),
    '{ lib, ... }:',
    '{',
    [
      platform(arch),
      kernelModules(facts, virt),
      boot(facts, virt, rootDisk, disko, diskName),
      networking(network),
    ]
      .filter((s) => s !== '')
      .join('\n\n'),
    '}',
  ];
  return `${sections.join('\n')}\n`;
}

function word(value: unknown, field: string): string {
  if (typeof value !== 'string' || !WORD.test(value))
    throw new HostConfigError(field, value, 'is not a plain word (A-Z a-z 0-9 . _ ~ + -)');
  return value;
}

function header(
  facts: Facts,
  opts: FactsToNixOptions,
  f: { virt: string; arch: string; rootDisk?: string },
): string {
  if (opts.host !== undefined && !HOST.test(opts.host))
    throw new HostConfigError('host', opts.host, 'is not a user@host[:port] target');
  const date = opts.date instanceof Date ? opts.date.toISOString().slice(0, 10) : opts.date;
  if (date !== undefined && !DATE.test(date))
    throw new HostConfigError('date', opts.date, 'is not a date (YYYY-MM-DD)');
  const os = [word(facts.osId, 'osId')];
  if (facts.osVersionId) os.push(word(facts.osVersionId, 'osVersionId'));
  const from =
    `Generated by vps-nixos facts-to-nix from the probe facts of ${opts.host ?? 'the host'}` +
    `${date ? ` (${date})` : ''}:`;
  const what = [
    os.join(' '),
    f.virt,
    f.arch,
    facts.isContainer ? 'container' : facts.efi ? 'UEFI boot' : 'BIOS boot',
    ...(f.rootDisk ? [`root disk ${f.rootDisk}`] : []),
  ].join(', ');
  return nixComment(
    `${from}\n${what}.\n\n` +
      'Commit this file and import it from the host configuration, next to\n' +
      'vps-nixos.nixosModules.default. It holds what the provider decided (addresses,\n' +
      'gateways, DNS, disk, drivers): generate it again when that changes rather than\n' +
      'editing it. Values set with lib.mkDefault yield to your own configuration.',
  );
}

function platform(arch: string): string {
  const system = PLATFORMS[arch];
  if (!system) return nixComment(`Architecture ${arch}: set nixpkgs.hostPlatform yourself.`, '  ');
  return `  nixpkgs.hostPlatform = lib.mkDefault ${nixString(system)};`;
}

function kernelModules(facts: Facts, virt: string): string {
  if (facts.isContainer) return '';
  const modules = initrdModules({ ...facts, virtualization: virt });
  if (modules.length === 0)
    return nixComment(
      `Virtualization ${virt}: no paravirtual drivers known; NixOS's default initrd modules apply.`,
      '  ',
    );
  return [
    nixComment(`${virt}: the paravirtual disk and network drivers, needed in stage 1.`, '  '),
    `  boot.initrd.availableKernelModules = ${nixStringList(modules, '  ')};`,
  ].join('\n');
}

function boot(
  facts: Facts,
  virt: string,
  rootDisk: string | undefined,
  disko: boolean,
  diskName: string,
): string {
  if (facts.isContainer)
    return [
      nixComment(`${virt} is a container: no kernel, initrd drivers, boot loader or disk.`, '  '),
      '  boot.isContainer = true;',
    ].join('\n');
  const lines: string[] = [];
  if (facts.efi) {
    lines.push(
      nixComment(
        'UEFI firmware (the probe saw /sys/firmware/efi). systemd-boot on the ESP mounted at\n' +
          '/boot; it also installs the fallback EFI/BOOT/BOOT*.EFI, which is what boots when the\n' +
          "provider's firmware does not keep boot entries, so EFI variables are left alone.",
        '  ',
      ),
      '  boot.loader.systemd-boot.enable = true;',
      '  boot.loader.efi.canTouchEfiVariables = false;',
    );
  } else if (disko) {
    lines.push(
      nixComment(
        'BIOS boot (no EFI firmware seen). GRUB goes to the disk below: disko adds it to\n' +
          'boot.loader.grub.devices because its layout has an EF02 partition; setting\n' +
          'boot.loader.grub.device as well would list the disk twice (an evaluation error).',
        '  ',
      ),
      '  boot.loader.grub.enable = true;',
    );
  } else if (rootDisk) {
    lines.push(
      nixComment("BIOS boot (no EFI firmware seen): GRUB in the root disk's MBR.", '  '),
      '  boot.loader.grub.enable = true;',
      `  boot.loader.grub.device = lib.mkDefault ${nixString(rootDisk)};`,
    );
  } else {
    lines.push(
      nixComment('BIOS boot, but the probe found no root disk: set boot.loader.grub.device.', '  '),
      '  boot.loader.grub.enable = true;',
    );
  }
  if (disko) {
    lines.push(
      rootDisk
        ? [
            nixComment(
              'The disk the root file system is on, for the disko layout in your configuration\n' +
                '(disko.nixosModules.disko must be imported; `facts-to-nix --disko false` writes\n' +
                'boot.loader.grub.device instead).',
              '  ',
            ),
            `  disko.devices.disk.${diskName}.device = lib.mkDefault ${nixString(rootDisk)};`,
          ].join('\n')
        : nixComment(
            `The probe found no root disk: set disko.devices.disk.${diskName}.device.`,
            '  ',
          ),
    );
  }
  return lines.join('\n');
}

function networking(network: HostNetwork): string {
  const out: string[] = [
    nixComment(
      'Network: systemd-networkd (as in the vps-nixos installer), one unit per NIC, matched by\n' +
        'MAC address, so it applies even when NixOS names the NIC differently from the old\n' +
        'system (ens3 / enp0s3 / eth0). That is why there are no networking.interfaces.<name> or\n' +
        'networking.defaultGateway values: NixOS matches those by name, they cannot say\n' +
        'GatewayOnLink, and their name-matched unit would keep a renamed-or-replaced NIC from\n' +
        "NixOS's DHCP fallback (networking.useDHCP), which still covers NICs not listed here.",
      '  ',
    ),
    '  networking.useNetworkd = true;',
  ];
  const allLeased = network.units.length > 0 && network.units.every((u) => u.dhcp4);
  if (network.nameservers.length > 0 && !allLeased)
    out.push(`  networking.nameservers = ${nixStringList(network.nameservers, '  ')};`);
  else if (network.nameservers.length > 0)
    out.push(nixComment('DNS servers come with the DHCP lease.', '  '));
  if (network.skipped.length > 0)
    out.push(
      nixComment(`Not configured (no Ethernet MAC to match): ${network.skipped.join(', ')}.`, '  '),
    );
  if (network.units.length === 0)
    out.push(nixComment('No NIC with a MAC and an address or static route was found.', '  '));
  for (const unit of network.units) out.push(networkUnit(unit));
  return out.join('\n');
}

function networkUnit(unit: NetworkUnit): string {
  const i = '    ';
  const lines = [
    `  systemd.network.networks.${nixString(`10-${unit.interfaceName}`)} = {`,
    `${i}matchConfig.MACAddress = ${nixString(unit.mac)};`,
    `${i}networkConfig = {`,
    `${i}  DHCP = ${nixString(unit.dhcp4 ? 'ipv4' : 'no')};`,
    `${i}  IPv6AcceptRA = ${unit.acceptRA};`,
    `${i}};`,
  ];
  if (unit.mtu !== undefined)
    lines.push(`${i}linkConfig.MTUBytes = ${nixString(String(unit.mtu))};`);
  if (unit.addresses.length > 0) lines.push(`${i}address = ${nixStringList(unit.addresses, i)};`);
  if (unit.routes.length > 0) {
    lines.push(`${i}routes = [`);
    for (const r of unit.routes) {
      const attrs = [
        ...(r.destination ? [`Destination = ${nixString(r.destination)};`] : []),
        ...(r.gateway ? [`Gateway = ${nixString(r.gateway)};`] : []),
        ...(r.gatewayOnLink ? ['GatewayOnLink = true;'] : []),
      ];
      lines.push(`${i}  { ${attrs.join(' ')} }`);
    }
    lines.push(`${i}];`);
  }
  lines.push('  };');
  return lines.join('\n');
}
