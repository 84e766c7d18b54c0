/**
 * The host's network as systemd-networkd units, from the probe's facts. The same rules as the
 * awk in nix/kexec-installer/run.sh, so the installed system comes up the way the installer did:
 * - only links with an Ethernet MAC are configured, matched by that MAC; an MTU other than 1500
 *   is kept (`MTUBytes=`);
 * - static (not `dynamic`) global addresses become `Address=`; a dynamic IPv4 address means
 *   `DHCP=ipv4`, a dynamic IPv6 address or an `ra` route means `IPv6AcceptRA=yes`;
 * - routes made by the kernel, DHCP, RAs or redirects are left out (they come back by
 *   themselves), as are gateway-less routes that are just an address's own prefix;
 * - a gateway outside every subnet of its interface (a /32 address with a provider gateway like
 *   172.31.1.1), or a route the kernel marks `onlink`, gets `GatewayOnLink=yes`; IPv6
 *   link-local gateways are always reachable;
 * - one unit per MAC: a VLAN has its parent's MAC (`eth0.4000` on `eth0`, Hetzner's vSwitch), so
 *   a MAC-matched unit for it would match the parent, and `10-eth0.4000` sorts before `10-eth0`
 *   (networkd takes the first file that matches): the VLAN's addresses would land untagged on the
 *   parent. A VLAN child (`<parent>.<id>` or `vlan<id>` beside a link with the same MAC) is left
 *   out and named; the facts carry no VLAN id or kind (`ip -d`) to declare its netdev from. Of
 *   other links that share a MAC and have something to carry (a bridge and its port, say), the
 *   one with the default route (else the first) keeps the unit. run.sh, which sees the kernel's
 *   VLAN table, matches VLANs by name instead and recreates them.
 */
import type { Facts } from '../probe/facts';
import { HostConfigError } from './errors';
import {
  type Cidr,
  type Family,
  checkAddress,
  checkDestination,
  checkInterfaceName,
  checkMac,
  checkNameserver,
  checkPrefixLength,
  familyOf,
  fullCidr,
  inside,
  isLinkLocal6,
  parseCidr,
} from './ip';

/** One `[Route]` of a unit. */
export interface UnitRoute {
  /** Absent for a default route. */
  destination?: string;
  gateway?: string;
  gatewayOnLink: boolean;
}

/** One systemd-networkd `.network` unit for one NIC of the host. */
export interface NetworkUnit {
  /** The interface's name on the probed host (names the unit; matching is by MAC). */
  interfaceName: string;
  mac: string;
  /** `DHCP=ipv4` when the host leased its IPv4 address. */
  dhcp4: boolean;
  /** `IPv6AcceptRA=yes` when the host used SLAAC or RA routes. */
  acceptRA: boolean;
  /** Static addresses, `address/prefix`. */
  addresses: string[];
  routes: UnitRoute[];
  /** The host had a default route on this link (IPv4 or IPv6). */
  hasDefaultRoute: boolean;
  /** The link's MTU when it is not Ethernet's 1500 (a provider's 1450 or 9000): `MTUBytes=`. */
  mtu?: number;
}

/** What facts-to-nix writes about the network. */
export interface HostNetwork {
  units: NetworkUnit[];
  /**
   * Interfaces with addresses or routes that are left out: no Ethernet MAC to match them by
   * (venet), or a MAC that another unit matches already (a VLAN child, named with the reason:
   * `eth0.4000 (VLAN 4000 on eth0, …)`).
   */
  skipped: string[];
  /** The host's DNS servers, in order. */
  nameservers: string[];
}

const LEFT_TO_THE_LINK = new Set(['kernel', 'dhcp', 'ra', 'redirect']);

interface Link {
  name: string;
  mac: string;
  nets: Cidr[];
  dynamic: Set<Family>;
  addresses: string[];
  routes: UnitRoute[];
  ra: boolean;
  hasDefaultRoute: boolean;
  wanted: boolean;
  mtu?: number;
}

/** The network units for the host, from its facts. Throws HostConfigError on a value we will not emit. */
export function hostNetwork(facts: Pick<Facts, 'interfaces' | 'routes' | 'dns'>): HostNetwork {
  if (!Array.isArray(facts.interfaces))
    throw new HostConfigError('interfaces', facts.interfaces, 'is not a list');
  if (!Array.isArray(facts.routes))
    throw new HostConfigError('routes', facts.routes, 'is not a list');
  if (!Array.isArray(facts.dns)) throw new HostConfigError('dns', facts.dns, 'is not a list');

  const links = new Map<string, Link>();
  const skipped: string[] = [];
  facts.interfaces.forEach((iface, i) => {
    const name = checkInterfaceName(iface?.name, `interfaces[${i}].name`);
    const mac = checkMac(iface.mac, `interfaces[${i}].mac`);
    const mtu = iface.mtu;
    if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535))
      throw new HostConfigError(`interfaces[${i}].mtu`, mtu, 'is not an MTU (68 to 65535)');
    if (!Array.isArray(iface.addresses))
      throw new HostConfigError(`interfaces[${i}].addresses`, iface.addresses, 'is not a list');
    // Addresses are checked even on links we skip: a bad value means bad facts.
    const link: Link = {
      name,
      mac: mac ?? '',
      nets: [],
      dynamic: new Set(),
      addresses: [],
      routes: [],
      ra: false,
      hasDefaultRoute: false,
      wanted: false,
      mtu: mtu !== undefined && mtu !== 1500 ? mtu : undefined,
    };
    iface.addresses.forEach((a, j) => {
      const field = `interfaces[${i}].addresses[${j}]`;
      if (a?.family !== 'inet' && a?.family !== 'inet6')
        throw new HostConfigError(`${field}.family`, a?.family, 'is neither inet nor inet6');
      const address = checkAddress(a.address, `${field}.address`, a.family);
      const prefixLength = checkPrefixLength(a.prefixLength, `${field}.prefixLength`, a.family);
      if (a.scope !== 'global') return;
      // Without the flag a leased address would be pinned as static: refuse rather than guess.
      if (typeof a.dynamic !== 'boolean')
        throw new HostConfigError(
          `${field}.dynamic`,
          a.dynamic,
          'is missing (probe the host again)',
        );
      link.nets.push({ address, prefixLength });
      link.wanted = true;
      if (a.dynamic === true) link.dynamic.add(a.family);
      else link.addresses.push(`${address}/${prefixLength}`);
    });
    if (!mac) {
      if (link.wanted) skipped.push(name);
      return;
    }
    if (links.has(name))
      throw new HostConfigError(`interfaces[${i}].name`, name, 'appears twice in the facts');
    links.set(name, link);
  });

  facts.routes.forEach((r, i) => {
    const field = `routes[${i}]`;
    if (r?.family !== 'inet' && r?.family !== 'inet6')
      throw new HostConfigError(`${field}.family`, r?.family, 'is neither inet nor inet6');
    const dst = checkDestination(r.dst, `${field}.dst`, r.family);
    // RFC 5549: an IPv4 route may have an IPv6 gateway (`via inet6 fe80::1`).
    const gateway =
      r.gateway === undefined || r.gateway === null || r.gateway === ''
        ? undefined
        : checkAddress(r.gateway, `${field}.gateway`);
    if (r.dev !== undefined && r.dev !== null) checkInterfaceName(r.dev, `${field}.dev`);
    if (
      r.protocol !== undefined &&
      r.protocol !== null &&
      !/^[A-Za-z0-9_.-]{1,32}$/.test(r.protocol)
    )
      throw new HostConfigError(`${field}.protocol`, r.protocol, 'is not a route protocol name');
    const link = r.dev ? links.get(r.dev) : undefined;
    if (!link) {
      // A route we cannot carry (venet0's gateway-less default) is worth a word in the file.
      const lost = r.dev && r.dev !== 'lo' && !LEFT_TO_THE_LINK.has(r.protocol ?? '');
      if (lost && !links.has(r.dev as string) && !skipped.includes(r.dev as string))
        skipped.push(r.dev as string);
      return;
    }
    if (dst === 'default') link.hasDefaultRoute = true;
    if (r.protocol === 'ra') link.ra = true;
    if (r.protocol && LEFT_TO_THE_LINK.has(r.protocol)) return;
    const destination = dst === 'default' ? undefined : fullCidr(dst);
    if (
      !gateway &&
      destination &&
      (connected(link, destination) || isLinkLocal6(parseCidr(destination).address))
    )
      return;
    const gatewayOnLink = !!gateway && (r.onlink === true || !reachable(link, gateway));
    link.routes.push({
      destination:
        destination ??
        (r.family === 'inet' && familyOf(gateway) === 'inet6' ? '0.0.0.0/0' : undefined),
      gateway,
      gatewayOnLink,
    });
    link.wanted = true;
  });

  skipped.push(...oneUnitPerMac(links));
  const nameservers = facts.dns.map((s, i) => checkNameserver(s, `dns[${i}]`));
  const units = [...links.values()]
    .filter((l) => l.wanted)
    .map((l) => ({
      interfaceName: l.name,
      mac: l.mac,
      dhcp4: l.dynamic.has('inet'),
      acceptRA: l.dynamic.has('inet6') || l.ra,
      addresses: l.addresses,
      routes: l.routes,
      hasDefaultRoute: l.hasDefaultRoute,
      ...(l.mtu !== undefined ? { mtu: l.mtu } : {}),
    }));
  return { units, skipped, nameservers: [...new Set(nameservers)] };
}

/** `eth0.4000` on `eth0`, or `vlan4000` beside one other link: a VLAN id and its parent's name. */
function vlanOf(link: Link, sameMac: Link[]): { id: number; parent: string } | undefined {
  const dotted = /^(.+)\.(\d{1,4})$/.exec(link.name);
  if (dotted && sameMac.some((l) => l.name === dotted[1])) {
    const id = Number(dotted[2]);
    if (id >= 1 && id <= 4094) return { id, parent: dotted[1] as string };
  }
  const named = /^vlan(\d{1,4})$/.exec(link.name);
  const others = sameMac.filter((l) => l !== link && !/^vlan\d+$/.test(l.name));
  if (named && others.length === 1) {
    const id = Number(named[1]);
    if (id >= 1 && id <= 4094) return { id, parent: (others[0] as Link).name };
  }
  return undefined;
}

/**
 * Drops the links a MAC-matched unit cannot tell apart from another (VLAN children, then all but
 * one of the rest) from `links`, and says why for those that had something to carry.
 */
function oneUnitPerMac(links: Map<string, Link>): string[] {
  const byMac = new Map<string, Link[]>();
  for (const l of links.values()) byMac.set(l.mac, [...(byMac.get(l.mac) ?? []), l]);
  const notes: string[] = [];
  for (const group of byMac.values()) {
    if (group.length < 2) continue;
    const children = new Set<Link>();
    for (const l of group) {
      const vlan = vlanOf(l, group);
      if (!vlan) continue;
      children.add(l);
      if (l.wanted)
        notes.push(
          `${l.name} (VLAN ${vlan.id} on ${vlan.parent}, with its MAC: a unit matched by that MAC ` +
            `would take ${vlan.parent}'s place; declare the VLAN as a netdev by hand)`,
        );
    }
    const rest = group.filter((l) => !children.has(l));
    const wanted = rest.filter((l) => l.wanted);
    const keep = wanted.find((l) => l.hasDefaultRoute) ?? wanted[0];
    for (const l of wanted)
      if (l !== keep)
        notes.push(
          `${l.name} (same MAC as ${(keep as Link).name}, which a unit matched by MAC configures)`,
        );
    for (const l of group) if (l !== keep && (children.has(l) || l.wanted)) links.delete(l.name);
  }
  return notes;
}

/** Is the gateway inside one of the link's subnets (link-local IPv6 always is)? */
function reachable(link: Link, gateway: string): boolean {
  return isLinkLocal6(gateway) || link.nets.some((n) => inside(gateway, n));
}

/** Is the destination exactly the prefix route of one of the link's addresses? */
function connected(link: Link, destination: string): boolean {
  const d = parseCidr(destination);
  return link.nets.some((n) => n.prefixLength === d.prefixLength && inside(d.address, n));
}
