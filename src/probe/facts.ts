/** Parsing the key=value output of scripts/facts.sh into typed Facts. Pure. */
import { ProbeError } from '../errors';

export interface FsFacts {
  fsType: string;
  sizeBytes: number;
  availBytes: number;
  mountpoint: string;
}

export interface AddressFacts {
  family: 'inet' | 'inet6';
  address: string;
  prefixLength: number;
  scope: string;
  /** Leased (DHCP/SLAAC) rather than configured statically: `ip addr`'s `dynamic` flag. */
  dynamic: boolean;
}

export interface InterfaceFacts {
  name: string;
  mac?: string;
  mtu?: number;
  addresses: AddressFacts[];
}

export interface RouteFacts {
  family: 'inet' | 'inet6';
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  metric?: number;
  onlink: boolean;
}

export interface DiskFacts {
  name: string;
  path: string;
  sizeBytes: number;
  model?: string;
  partitions: {
    name: string;
    path: string;
    sizeBytes: number;
    mountpoint?: string;
    fsType?: string;
  }[];
}

/** What the last nixos-infect run left behind (the state survives a reboot, not NixOS's lustrate). */
export interface InfectFacts {
  /** The boot it was started in: the same as the host's now means it has not rebooted since. */
  bootId: string;
  /** Its exit status, once it finished. */
  exit?: number;
  /** Its process is alive. */
  running: boolean;
}

/** What the probe learned about the target. */
export interface Facts {
  memTotalBytes: number;
  memAvailableBytes?: number;
  swapTotalBytes: number;
  /** `systemd-detect-virt`'s word (`kvm`, `qemu`, `openvz`, `lxc`, `none`, …), or our best guess without it. */
  virtualization: string;
  virtualizationSource: 'systemd-detect-virt' | 'hints';
  isContainer: boolean;
  osId: string;
  osVersionId?: string;
  osVariantId?: string;
  osPrettyName?: string;
  isNixos: boolean;
  /** NixOS booted into our (or nixos-anywhere's) kexec installer: mid-install, not installed. */
  isInstaller: boolean;
  currentSystem?: string;
  /** Where /nix/var/nix/profiles/system leads (the boot default), when the host has one. */
  systemProfile?: string;
  /** Failed units (`systemctl --failed`) on a NixOS host; undefined when not read. */
  failedUnits?: string[];
  /** kernel, initrd, kernel-modules of the current system that differ from the booted one's. */
  rebootPending?: string[];
  /** Our nixos-infect run on this host (scripts/phases/infect.sh's state), when there was one. */
  infect?: InfectFacts;
  arch: string;
  kernel: string;
  bootId: string;
  machineId?: string;
  efi: boolean;
  kexecLoadDisabled?: boolean;
  root?: FsFacts;
  rootSource?: string;
  tmp?: FsFacts;
  varTmp?: FsFacts;
  disks: DiskFacts[];
  rootDisk?: string;
  interfaces: InterfaceFacts[];
  routes: RouteFacts[];
  dns: string[];
  tools: Record<string, string>;
  packageManager?: string;
}

export const CONTAINER_TYPES = [
  'openvz',
  'lxc',
  'lxc-libvirt',
  'docker',
  'podman',
  'systemd-nspawn',
  'rkt',
  'wsl',
  'proot',
  'pouch',
  'container-other',
];

type Raw = Map<string, string[]>;

function collect(text: string): Raw {
  const raw: Raw = new Map();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const list = raw.get(key) ?? [];
    list.push(line.slice(eq + 1));
    raw.set(key, list);
  }
  return raw;
}

const first = (raw: Raw, key: string): string | undefined => raw.get(key)?.[0];

const BOOT_FILES = ['kernel', 'initrd', 'kernel-modules'] as const;

/** The running NixOS system's state an unchanged deploy is decided on; absent keys stay absent. */
function nixosState(raw: Raw): Pick<Facts, 'systemProfile' | 'failedUnits' | 'rebootPending'> {
  const out: Pick<Facts, 'systemProfile' | 'failedUnits' | 'rebootPending'> = {};
  const profile = first(raw, 'nixos.system_profile');
  if (profile) out.systemProfile = profile;
  const failed = first(raw, 'nixos.failed_units');
  if (failed !== undefined) out.failedUnits = failed.split(/\s+/).filter(Boolean);
  if (raw.has('nixos.current.kernel') || raw.has('nixos.booted.kernel')) {
    out.rebootPending = BOOT_FILES.filter((f) => {
      const now = first(raw, `nixos.current.${f}`) ?? '';
      const booted = first(raw, `nixos.booted.${f}`) ?? '';
      return now !== '' && booted !== '' && now !== booted;
    });
  }
  return out;
}
const all = (raw: Raw, key: string): string[] => raw.get(key) ?? [];

function meminfo(raw: Raw, field: string): number | undefined {
  for (const l of all(raw, 'meminfo')) {
    const m = new RegExp(`^${field}:\\s*(\\d+)\\s*kB`).exec(l);
    if (m) return Number(m[1]) * 1024;
  }
  return undefined;
}

function osRelease(raw: Raw): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of all(raw, 'osrelease')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(l.trim());
    if (!m) continue;
    const value = (m[2] as string).replace(/^(["'])(.*)\1$/, '$2');
    // NixOS writes VARIANT_ID="" and ID_LIKE="": empty means absent.
    if (value !== '') out[m[1] as string] = value;
  }
  return out;
}

/** systemd-detect-virt when it answered; else the hints a container or VM leaves behind. */
function virtualization(raw: Raw): { virt: string; source: Facts['virtualizationSource'] } {
  const detected = first(raw, 'virt.detect')?.trim();
  if (detected) return { virt: detected, source: 'systemd-detect-virt' };
  const hint = (k: string) => first(raw, `hint.${k}`);
  let virt = 'none';
  const declared = hint('run_container') ?? hint('pid1_container');
  const cgroup = hint('cgroup') ?? '';
  const vendor = `${hint('dmi_sys_vendor') ?? ''} ${hint('dmi_product_name') ?? ''}`;
  if ((hint('proc_vz') && !hint('proc_bc')) || hint('user_beancounters')) virt = 'openvz';
  else if (declared) virt = declared === 'lxc-libvirt' ? 'lxc-libvirt' : declared;
  else if (hint('dockerenv') || /docker/.test(cgroup)) virt = 'docker';
  else if (/libpod/.test(cgroup)) virt = 'podman';
  else if (/lxc/.test(cgroup)) virt = 'lxc';
  // QEMU's DMI strings say QEMU under KVM too; kvm-clock is what tells KVM apart (as systemd's CPUID check does).
  else if (/KVM/.test(vendor) || /kvm-clock/.test(hint('clocksource') ?? '')) virt = 'kvm';
  else if (/QEMU/.test(vendor)) virt = 'qemu';
  else if (/VMware/.test(vendor)) virt = 'vmware';
  else if (/Xen/.test(vendor) || hint('proc_xen')) virt = 'xen';
  else if (/Microsoft/.test(vendor)) virt = 'microsoft';
  else if (hint('cpu_hypervisor')) virt = 'vm-other';
  return { virt, source: 'hints' };
}

function fsFacts(raw: Raw, path: string): FsFacts | undefined {
  for (const l of all(raw, 'fs')) {
    const f = l.trim().split(/\s+/);
    // path type source blocks used avail capacity mountpoint
    if (f[0] !== path || f.length < 8) continue;
    return {
      fsType: f[1] as string,
      sizeBytes: Number(f[3]) * 1024,
      availBytes: Number(f[5]) * 1024,
      mountpoint: f.slice(7).join(' '),
    };
  }
  return undefined;
}

interface LsblkDevice {
  name: string;
  path?: string;
  type: string;
  size: number | string;
  model?: string | null;
  mountpoint?: string | null;
  fstype?: string | null;
  children?: LsblkDevice[];
}

const VIRTUAL_DISK = /^(zram|loop|ram|sr|fd|nbd)/;

function disksFromLsblk(json: string): DiskFacts[] {
  let parsed: { blockdevices?: LsblkDevice[] };
  try {
    parsed = JSON.parse(json) as { blockdevices?: LsblkDevice[] };
  } catch {
    throw new ProbeError(
      'lsblk -J printed something that is not JSON',
      'report this with the probe output',
    );
  }
  const disks: DiskFacts[] = [];
  const flat = (d: LsblkDevice): LsblkDevice[] => [d, ...(d.children ?? []).flatMap(flat)];
  for (const d of parsed.blockdevices ?? []) {
    if (d.type !== 'disk' || VIRTUAL_DISK.test(d.name) || Number(d.size) === 0) continue;
    disks.push({
      name: d.name,
      path: d.path ?? `/dev/${d.name}`,
      sizeBytes: Number(d.size),
      model: d.model?.trim() || undefined,
      partitions: (d.children ?? []).flatMap(flat).map((p) => ({
        name: p.name,
        path: p.path ?? `/dev/${p.name}`,
        sizeBytes: Number(p.size),
        mountpoint: p.mountpoint ?? undefined,
        fsType: p.fstype ?? undefined,
      })),
    });
  }
  return disks;
}

function disksFromSys(raw: Raw): DiskFacts[] {
  const disks: DiskFacts[] = [];
  for (const l of all(raw, 'sysblock')) {
    const [name, sectors] = l.trim().split(/\s+/);
    if (!name || VIRTUAL_DISK.test(name) || !Number(sectors)) continue;
    const partitions = all(raw, 'syspart')
      .map((p) => p.trim().split(/\s+/))
      .filter((p) => p[0] === name)
      .map(([, part, size]) => ({
        name: part as string,
        path: `/dev/${part}`,
        sizeBytes: Number(size) * 512,
      }));
    disks.push({ name, path: `/dev/${name}`, sizeBytes: Number(sectors) * 512, partitions });
  }
  return disks;
}

/** The whole disk holding a partition path like /dev/vda1, /dev/nvme0n1p2 or /dev/mapper/… */
function diskOf(source: string | undefined, disks: DiskFacts[]): string | undefined {
  if (!source) return undefined;
  for (const d of disks) {
    if (d.path === source || d.partitions.some((p) => p.path === source || p.mountpoint === '/'))
      return d.path;
  }
  const m = /^\/dev\/((?:nvme\d+n\d+|mmcblk\d+)(?=p\d+$)|[a-z]+(?=\d+$))/.exec(source);
  return m ? `/dev/${m[1]}` : undefined;
}

interface IpJsonAddr {
  ifname: string;
  address?: string;
  mtu?: number;
  link_type?: string;
  addr_info?: {
    family: string;
    local: string;
    prefixlen: number;
    scope?: string;
    dynamic?: boolean;
  }[];
}

interface IpJsonRoute {
  dst: string;
  gateway?: string;
  /** An IPv4 route via an IPv6 next hop (RFC 5549): `via inet6 fe80::1`. */
  via?: { family: string; host: string };
  metric?: number;
  dev?: string;
  protocol?: string;
  flags?: string[];
  type?: string;
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ProbeError(
      `${what} printed something that is not JSON`,
      'report this with the probe output',
    );
  }
}

function interfacesFromJson(json: string): InterfaceFacts[] {
  return parseJson<IpJsonAddr[]>(json, 'ip -j addr')
    .filter((i) => i.link_type !== 'loopback')
    .map((i) => ({
      name: i.ifname,
      mtu: i.mtu,
      mac: i.address,
      addresses: (i.addr_info ?? [])
        .filter((a) => a.family === 'inet' || a.family === 'inet6')
        .map((a) => ({
          family: a.family as 'inet' | 'inet6',
          address: a.local,
          prefixLength: a.prefixlen,
          scope: a.scope ?? 'global',
          dynamic: a.dynamic === true,
        })),
    }));
}

function interfacesFromText(raw: Raw): InterfaceFacts[] {
  const byName = new Map<string, InterfaceFacts>();
  for (const l of all(raw, 'ip.link')) {
    const m = /^\d+:\s+([^:@\s]+)(?:@\S+)?:.*?link\/(\S+)\s+([0-9a-f:]+)/.exec(l);
    if (!m || m[2] === 'loopback') continue;
    const mtu = /\bmtu (\d+)/.exec(l)?.[1];
    byName.set(m[1] as string, {
      name: m[1] as string,
      mac: m[3],
      mtu: mtu ? Number(mtu) : undefined,
      addresses: [],
    });
  }
  for (const l of all(raw, 'ip.addr')) {
    const m = /^\d+:\s+(\S+)\s+(inet6?)\s+([0-9a-fA-F.:]+)\/(\d+)(.*)$/.exec(l);
    if (!m) continue;
    const name = m[1] as string;
    if (name === 'lo') continue;
    const rest = m[5] as string;
    const iface = byName.get(name) ?? { name, addresses: [] };
    byName.set(name, iface);
    iface.addresses.push({
      family: m[2] as 'inet' | 'inet6',
      address: m[3] as string,
      prefixLength: Number(m[4]),
      scope: /scope (\S+)/.exec(rest)?.[1] ?? 'global',
      dynamic: /\bdynamic\b/.test(rest.split('\\')[0] ?? ''),
    });
  }
  return [...byName.values()];
}

function routesFromText(lines: string[], family: RouteFacts['family']): RouteFacts[] {
  const out: RouteFacts[] = [];
  for (const l of lines) {
    const f = l.trim().split(/\s+/);
    if (
      ['multicast', 'local', 'broadcast', 'unreachable', 'blackhole', 'prohibit'].includes(
        f[0] ?? '',
      )
    )
      continue;
    const opt = (k: string) => {
      const i = f.indexOf(k);
      return i >= 0 ? f[i + 1] : undefined;
    };
    // `via inet6 fe80::1` names the family before the next hop.
    const via = opt('via');
    const gateway = via === 'inet' || via === 'inet6' ? f[f.indexOf('via') + 2] : via;
    const metric = opt('metric');
    out.push({
      family,
      dst: f[0] as string,
      gateway,
      dev: opt('dev'),
      protocol: opt('proto'),
      metric: metric !== undefined ? Number(metric) : undefined,
      onlink: f.includes('onlink'),
    });
  }
  return out;
}

function routesFromJson(json: string, family: RouteFacts['family']): RouteFacts[] {
  return parseJson<IpJsonRoute[]>(json, 'ip -j route')
    .filter((r) => !r.type || r.type === 'unicast')
    .map((r) => ({
      family,
      dst: r.dst,
      gateway: r.gateway ?? r.via?.host,
      dev: r.dev,
      protocol: r.protocol,
      metric: r.metric,
      onlink: (r.flags ?? []).includes('onlink'),
    }));
}

/** The nameservers the host really uses (systemd-resolved's upstreams rather than its 127.0.0.53 stub). */
function dnsServers(raw: Raw): string[] {
  const from = (key: string) =>
    all(raw, key)
      .map((l) => /^nameserver\s+(\S+)/.exec(l.trim())?.[1])
      .filter((s): s is string => !!s);
  // resolved's upstream list counts only when resolv.conf points at its stub.
  const conf = from('dns.resolvconf');
  const usesStub = conf.some((s) => s.startsWith('127.0.0.53'));
  const resolved = usesStub ? from('dns.resolved') : [];
  const servers = resolved.length ? resolved : conf;
  return [...new Set(servers.filter((s) => !s.startsWith('127.0.0.53')))];
}

function infectFacts(raw: Raw): InfectFacts | undefined {
  const bootId = first(raw, 'infect.boot_id');
  if (!bootId) return undefined;
  const exit = first(raw, 'infect.exit');
  return {
    bootId,
    exit: exit !== undefined && /^\d+$/.test(exit) ? Number(exit) : undefined,
    running: first(raw, 'infect.running') === '1',
  };
}

/** Parses facts.sh output. Throws ProbeError when essential facts are missing. */
export function parseFacts(text: string): Facts {
  const raw = collect(text);
  if (first(raw, 'facts.version') !== '1') {
    throw new ProbeError(
      'the probe printed no facts (facts.version=1 missing)',
      'check that /bin/sh works for this user on the target',
    );
  }
  const memTotal = meminfo(raw, 'MemTotal');
  if (memTotal === undefined)
    throw new ProbeError(
      'the probe found no MemTotal in /proc/meminfo',
      'is /proc mounted on the target?',
    );
  const os = osRelease(raw);
  const { virt, source } = virtualization(raw);
  const isNixos = first(raw, 'nixos.marker') === '1' || os.ID === 'nixos';
  const isInstaller =
    isNixos && (os.VARIANT_ID === 'installer' || first(raw, 'nixos.is_kexec') === '1');
  const lsblk = first(raw, 'lsblk.json');
  const disks = lsblk ? disksFromLsblk(lsblk) : disksFromSys(raw);
  const rootSource = first(raw, 'root.source') || undefined;
  const addrJson = first(raw, 'ip.addr.json');
  const tools: Record<string, string> = {};
  for (const [k, v] of raw) if (k.startsWith('tool.') && v[0]) tools[k.slice(5)] = v[0];
  const kld = first(raw, 'kexec_load_disabled');
  return {
    memTotalBytes: memTotal,
    memAvailableBytes: meminfo(raw, 'MemAvailable'),
    swapTotalBytes: meminfo(raw, 'SwapTotal') ?? 0,
    virtualization: virt,
    virtualizationSource: source,
    isContainer: CONTAINER_TYPES.includes(virt),
    osId: os.ID ?? 'linux',
    osVersionId: os.VERSION_ID,
    osVariantId: os.VARIANT_ID,
    osPrettyName: os.PRETTY_NAME,
    isNixos,
    isInstaller,
    currentSystem: first(raw, 'nixos.current_system'),
    ...nixosState(raw),
    infect: infectFacts(raw),
    arch: first(raw, 'arch') ?? 'unknown',
    kernel: first(raw, 'kernel') ?? 'unknown',
    bootId: first(raw, 'boot_id') ?? '',
    machineId: first(raw, 'machine_id') || undefined,
    efi: first(raw, 'efi') === '1',
    kexecLoadDisabled: kld === '1' ? true : kld === '0' ? false : undefined,
    root: fsFacts(raw, '/'),
    rootSource,
    tmp: fsFacts(raw, '/tmp'),
    varTmp: fsFacts(raw, '/var/tmp'),
    disks,
    rootDisk: diskOf(rootSource, disks),
    interfaces: addrJson ? interfacesFromJson(addrJson) : interfacesFromText(raw),
    routes: [
      ...(first(raw, 'ip.route4.json') !== undefined
        ? routesFromJson(first(raw, 'ip.route4.json') || '[]', 'inet')
        : routesFromText(all(raw, 'ip.route4'), 'inet')),
      ...(first(raw, 'ip.route6.json') !== undefined
        ? routesFromJson(first(raw, 'ip.route6.json') || '[]', 'inet6')
        : routesFromText(all(raw, 'ip.route6'), 'inet6')),
    ],
    dns: dnsServers(raw),
    tools,
    packageManager: first(raw, 'pkgmgr'),
  };
}
