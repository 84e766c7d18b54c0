import { isIPv4, isIPv6 } from 'node:net';

/** Where we connect: `user@host[:port]`. */
export interface Target {
  user: string;
  host: string;
  port: number;
  /** The name OpenSSH looks up in known_hosts: `host`, or `[host]:port` off port 22. */
  knownHostsName: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;
const USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;

/** Parses `user@host[:port]` (IPv4, `[IPv6]`, or hostname). Returns the Target or a problem. */
export function parseTarget(text: string): Target | string {
  const at = text.lastIndexOf('@');
  const user = at >= 0 ? text.slice(0, at) : 'root';
  const rest = at >= 0 ? text.slice(at + 1) : text;
  if (!USER.test(user)) return `user '${user}' is not a valid login name`;

  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return `'${rest}' opens '[' without closing ']'`;
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) return `unexpected '${after}' after ']'`;
    portText = after ? after.slice(1) : undefined;
    if (!isIPv6(host)) return `'${host}' in brackets is not an IPv6 address`;
  } else {
    if ((rest.match(/:/g) ?? []).length > 1) {
      return `IPv6 address '${rest}' must be written in brackets: ${user}@[${rest}]`;
    }
    const colon = rest.indexOf(':');
    host = colon >= 0 ? rest.slice(0, colon) : rest;
    portText = colon >= 0 ? rest.slice(colon + 1) : undefined;
    if (host === '') return 'the host is empty';
    const looksNumeric = /^[\d.]+$/.test(host);
    if (looksNumeric ? !isIPv4(host) : !HOSTNAME.test(host)) {
      return `'${host}' is not an IPv4 address or a hostname`;
    }
  }
  let port = 22;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      return `port '${portText}' is not a number from 1 to 65535`;
    }
    port = Number(portText);
  }
  const knownHostsName = port === 22 ? host : `[${host}]:${port}`;
  return { user, host, port, knownHostsName };
}

/**
 * Whether `user@host[:port]` names a port (even :22). Says nothing about validity: parseTarget
 * does. For a destination handed to ssh as is (nixos-rebuild's --build-host), which takes no port.
 */
export function namesPort(text: string): boolean {
  const rest = text.slice(text.lastIndexOf('@') + 1);
  if (rest.startsWith('[')) return /^\[[^\]]*\]:/.test(rest);
  // One colon is a port; more is an IPv6 address without brackets (parseTarget refuses it).
  return (rest.match(/:/g) ?? []).length === 1;
}

/** `user@host:port` as people write it (brackets for IPv6). */
export function formatTarget(t: Target): string {
  const h = isIPv6(t.host) ? `[${t.host}]` : t.host;
  return `${t.user}@${h}${t.port === 22 ? '' : `:${t.port}`}`;
}
