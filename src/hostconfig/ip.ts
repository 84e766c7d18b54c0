/**
 * Strict checks and prefix arithmetic for the values facts-to-nix writes into Nix: addresses,
 * prefixes, MACs, interface names, disk paths. Every value that reaches the generated file went
 * through one of the `check*` functions, which throw HostConfigError naming the value.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { HostConfigError } from './errors';

export type Family = 'inet' | 'inet6';

/** A parsed address: its family and its bits as a number (32 or 128 of them). */
interface Bits {
  family: Family;
  value: bigint;
}

/** IFNAMSIZ is 16 with the NUL; systemd and iproute2 accept these characters without quoting. */
const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
/** What `ip` prints as a link address: hex octets (ether, infiniband) or dotted quads (sit, gre). */
const LINK_ADDRESS = /^[0-9a-fA-F:.]+$/;
const DISK = /^\/dev\/[A-Za-z0-9_][A-Za-z0-9_.:+-]*(?:\/[A-Za-z0-9_][A-Za-z0-9_.:+-]*)*$/;
const IPV4_DOTTED =
  /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_CHARS = /^[0-9a-fA-F:.]+$/;

/** An interface name the kernel could have given and that needs no quoting anywhere. */
export function checkInterfaceName(name: unknown, field: string): string {
  if (typeof name !== 'string' || !IFNAME.test(name) || name === '.' || name === '..')
    throw new HostConfigError(
      field,
      name,
      'is not a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)',
    );
  return name;
}

/**
 * An Ethernet MAC, lower-cased; undefined for links that have none we could match on (tunnels
 * print 0.0.0.0, loopback and venet print zeros or nothing). Anything that is not a link address
 * at all is refused.
 */
export function checkMac(mac: unknown, field: string): string | undefined {
  if (mac === undefined || mac === null || mac === '') return undefined;
  if (typeof mac !== 'string' || !LINK_ADDRESS.test(mac) || mac.length > 64)
    throw new HostConfigError(field, mac, 'is not a link-layer address');
  const lower = mac.toLowerCase();
  if (!MAC.test(lower) || lower === '00:00:00:00:00:00') return undefined;
  return lower;
}

/** An IPv4 or IPv6 address without prefix or zone, of the given family when one is given. */
export function checkAddress(address: unknown, field: string, family?: Family): string {
  const fam = familyOf(address);
  if (!fam || (family && fam !== family))
    throw new HostConfigError(
      field,
      address,
      `is not an ${family === 'inet' ? 'IPv4' : family === 'inet6' ? 'IPv6' : 'IP'} address`,
    );
  return address as string;
}

/** A prefix length that fits the family. */
export function checkPrefixLength(length: unknown, field: string, family: Family): number {
  const max = family === 'inet' ? 32 : 128;
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > max)
    throw new HostConfigError(field, length, `is not a prefix length (0-${max})`);
  return length;
}

/** `default`, an address or an address/prefix, as ip(8) prints a route's destination. */
export function checkDestination(dst: unknown, field: string, family: Family): string {
  if (dst === 'default') return dst;
  if (typeof dst !== 'string') throw new HostConfigError(field, dst, 'is not a route destination');
  const slash = dst.indexOf('/');
  const addr = slash < 0 ? dst : dst.slice(0, slash);
  if (familyOf(addr) !== family)
    throw new HostConfigError(
      field,
      dst,
      `is not an ${family === 'inet' ? 'IPv4' : 'IPv6'} route destination`,
    );
  if (slash >= 0) {
    const len = dst.slice(slash + 1);
    if (!/^\d{1,3}$/.test(len)) throw new HostConfigError(field, dst, 'has no valid prefix length');
    checkPrefixLength(Number(len), field, family);
  }
  return dst;
}

/** A DNS server as resolv.conf names it: an address, IPv6 link-local ones with a %interface zone. */
export function checkNameserver(server: unknown, field: string): string {
  if (typeof server === 'string' && server.includes('%')) {
    const [addr, zone] = server.split('%', 2) as [string, string];
    if (familyOf(addr) === 'inet6' && IFNAME.test(zone)) return server;
    throw new HostConfigError(field, server, 'is not a name server address');
  }
  if (!familyOf(server)) throw new HostConfigError(field, server, 'is not a name server address');
  return server as string;
}

/** A block device path under /dev made of plain path characters. */
export function checkDiskPath(path: unknown, field: string): string {
  if (typeof path !== 'string' || !DISK.test(path) || path.split('/').includes('..'))
    throw new HostConfigError(field, path, 'is not a /dev path of a disk');
  return path;
}

/** The address family of a string, or undefined when it is no address (zones are not addresses). */
export function familyOf(address: unknown): Family | undefined {
  if (typeof address !== 'string') return undefined;
  if (IPV4_DOTTED.test(address) && isIPv4(address)) return 'inet';
  if (IPV6_CHARS.test(address) && isIPv6(address)) return 'inet6';
  return undefined;
}

function bitsOf(address: string): Bits {
  if (familyOf(address) === 'inet') {
    const value = address
      .split('.')
      .reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
    return { family: 'inet', value };
  }
  // Expand "::" and an embedded dotted quad (::ffff:192.0.2.1) into eight groups.
  let text = address.toLowerCase();
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const v4 = bitsOf(quad[1] as string).value;
    text = `${text.slice(0, quad.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::', 2) : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros =
    tail === undefined ? [] : Array(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  return { family: 'inet6', value };
}

/** A network: address and prefix length, e.g. from `2001:db8::1/64`. */
export interface Cidr {
  address: string;
  prefixLength: number;
}

/** Parses `a/n` or a bare address (a host route: /32 or /128). Call only on checked text. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const width = familyOf(address) === 'inet' ? 32 : 128;
  return { address, prefixLength: slash < 0 ? width : Number(text.slice(slash + 1)) };
}

/** `a/n` written out in full: a bare address gets /32 or /128 (run.sh's `full`). */
export function fullCidr(text: string): string {
  const c = parseCidr(text);
  return `${c.address}/${c.prefixLength}`;
}

/** Is address inside network (same family, same first prefixLength bits)? */
export function inside(address: string, network: Cidr): boolean {
  const a = bitsOf(address);
  const n = bitsOf(network.address);
  if (a.family !== n.family) return false;
  const width = a.family === 'inet' ? 32n : 128n;
  const shift = width - BigInt(network.prefixLength);
  return a.value >> shift === n.value >> shift;
}

/** fe80::/10, which needs no subnet to be reachable on a link. */
export function isLinkLocal6(address: string): boolean {
  return familyOf(address) === 'inet6' && bitsOf(address).value >> 118n === 0x3fan;
}
