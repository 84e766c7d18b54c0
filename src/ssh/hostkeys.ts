import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** A public host key as it travels in SSH: its type name and wire-format blob. */
export interface HostKey {
  type: string;
  blob: Buffer;
}

/** A pinned (or revoked) key, with the known_hosts line it came from when it came from one. */
export interface PinnedKey extends HostKey {
  line?: number;
}

/** What the host must present: any of these keys, or any key with one of these fingerprints. */
export interface HostKeyPin {
  keys: PinnedKey[];
  fingerprints: string[];
  revoked: PinnedKey[];
  /** How the known_hosts text was used (absent when none was given): says why nothing is pinned. */
  knownHosts?: { entries: number; otherHosts: number; certAuthorities: number };
  /** What messages call the known_hosts text (default: the known-hosts input). */
  source?: string;
}

/** One usable line of a known_hosts file. */
export interface KnownHostsEntry {
  marker?: '@revoked' | '@cert-authority';
  /** Plain host patterns (`host`, `[host]:port`, wildcards, `!negations`) or one hashed name. */
  hosts: { kind: 'patterns'; patterns: string[] } | { kind: 'hashed'; salt: Buffer; hash: Buffer };
  key: HostKey;
  lineNumber: number;
}

/** OpenSSH's fingerprint: `SHA256:` + unpadded base64 of the blob's sha256. */
export function fingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** Reads the key type name that starts every SSH public key blob. */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** The `type base64` form used in known_hosts and authorized_keys. */
export function formatKey(key: HostKey): string {
  return `${key.type} ${key.blob.toString('base64')}`;
}

/** Parses known_hosts text; malformed lines are reported, comments and blanks skipped. */
export function parseKnownHosts(text: string): { entries: KnownHostsEntry[]; errors: string[] } {
  const entries: KnownHostsEntry[] = [];
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostsEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m !== '@revoked' && m !== '@cert-authority') {
        errors.push(`line ${i + 1}: unknown marker ${m}`);
        return;
      }
      marker = m;
    }
    const [hostsField, type, b64] = fields;
    if (!hostsField || !type || !b64) {
      errors.push(`line ${i + 1}: expected 'host keytype base64-key'`);
      return;
    }
    const blob = Buffer.from(b64, 'base64');
    if (blob.length === 0 || keyTypeOf(blob) !== type) {
      errors.push(`line ${i + 1}: the key is not a valid ${type} public key`);
      return;
    }
    let hosts: KnownHostsEntry['hosts'];
    if (hostsField.startsWith('|1|')) {
      const [, , salt, hash] = hostsField.split('|');
      if (!salt || !hash) {
        errors.push(`line ${i + 1}: malformed hashed host '${hostsField}'`);
        return;
      }
      hosts = {
        kind: 'hashed',
        salt: Buffer.from(salt, 'base64'),
        hash: Buffer.from(hash, 'base64'),
      };
    } else {
      hosts = { kind: 'patterns', patterns: hostsField.split(',') };
    }
    entries.push({ marker, hosts, key: { type, blob }, lineNumber: i + 1 });
  });
  return { entries, errors };
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

/** Does this entry name the host? `name` is `host` on port 22, else `[host]:port` (OpenSSH's rule). */
export function entryMatches(entry: KnownHostsEntry, name: string): boolean {
  if (entry.hosts.kind === 'hashed') {
    // ssh lowercases the host name before it looks it up or hashes it (`ssh-keygen -H` too).
    const h = createHmac('sha1', entry.hosts.salt).update(name.toLowerCase()).digest();
    return h.length === entry.hosts.hash.length && timingSafeEqual(h, entry.hosts.hash);
  }
  let matched = false;
  for (const p of entry.hosts.patterns) {
    const negated = p.startsWith('!');
    if (globToRegExp(negated ? p.slice(1) : p).test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Builds the pin for one host from known_hosts text (`source` in messages) and/or fingerprints. */
export function pinFor(
  name: string,
  knownHosts: string | undefined,
  fingerprints: string[],
  source?: string,
): HostKeyPin {
  const pin: HostKeyPin = { keys: [], fingerprints: [...fingerprints], revoked: [] };
  if (source !== undefined) pin.source = source;
  if (knownHosts !== undefined) {
    const { entries } = parseKnownHosts(knownHosts);
    pin.knownHosts = { entries: entries.length, otherHosts: 0, certAuthorities: 0 };
    for (const e of entries) {
      if (!entryMatches(e, name)) pin.knownHosts.otherHosts++;
      else if (e.marker === '@revoked') pin.revoked.push({ ...e.key, line: e.lineNumber });
      else if (e.marker === '@cert-authority') pin.knownHosts.certAuthorities++;
      else pin.keys.push({ ...e.key, line: e.lineNumber });
    }
  }
  return pin;
}

/** How a presented key fares against the pin. A revoked key is refused even if it is also pinned. */
export type HostKeyVerdict =
  { kind: 'pinned' } | { kind: 'revoked'; line?: number } | { kind: 'unpinned' };

/** Judges the key the host presented. */
export function judgeHostKey(pin: HostKeyPin, blob: Buffer): HostKeyVerdict {
  const revoked = pin.revoked.find((k) => k.blob.equals(blob));
  if (revoked) return { kind: 'revoked', line: revoked.line };
  if (pin.keys.some((k) => k.blob.equals(blob))) return { kind: 'pinned' };
  return pin.fingerprints.includes(fingerprint(blob)) ? { kind: 'pinned' } : { kind: 'unpinned' };
}

/** True when the presented key satisfies the pin (and is not revoked). */
export function pinAccepts(pin: HostKeyPin, blob: Buffer): boolean {
  return judgeHostKey(pin, blob).kind === 'pinned';
}

/** `type SHA256:…`, as ssh-keygen -lf names a key. */
export function describeKey(key: HostKey): string {
  return `${key.type} ${fingerprint(key.blob)}`;
}

/** The pins, each with where it came from, for messages: `ssh-rsa SHA256:… (known-hosts line 2)`. */
export function expectedFingerprints(pin: HostKeyPin): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const k of pin.keys) {
    const fp = fingerprint(k.blob);
    if (seen.has(fp)) continue;
    seen.add(fp);
    const where = ` (${pin.source ?? 'known-hosts'} line ${k.line})`;
    out.push(describeKey(k) + (k.line !== undefined ? where : ''));
  }
  for (const fp of pin.fingerprints) {
    if (seen.has(fp)) continue;
    seen.add(fp);
    out.push(`${fp} (host-key-fingerprint)`);
  }
  return out;
}

/**
 * What the host showed, for a mismatch: each key it presented, and the pinned key types it has
 * no key of (it offered none of their algorithms).
 */
export function describePresented(presented: HostKey[], lacking: string[]): string {
  const parts = presented.map(describeKey);
  if (lacking.length) parts.push(`no ${lacking.join(' or ')} key`);
  if (parts.length === 0) return 'no host key of a type ssh2 can verify';
  return parts.length === 1 ? parts[0]! : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
}

/** Why the pin for `name` is empty, in words; undefined when something is pinned. */
export function whyNotPinned(pin: HostKeyPin, name: string): string | undefined {
  if (pin.keys.length > 0 || pin.fingerprints.length > 0) return undefined;
  const kh = pin.knownHosts;
  if (!kh) return 'neither known-hosts nor host-key-fingerprint is given';
  const src = pin.source ?? 'known-hosts';
  if (pin.revoked.length > 0)
    return `${src} marks every key it has for ${name} @revoked (line ${pin.revoked.map((k) => k.line).join(', ')})`;
  if (kh.certAuthorities > 0)
    return `${src} has only @cert-authority lines for ${name}, and host certificates are not supported`;
  if (kh.entries === 0) return `${src} has no host key lines`;
  return `${src} has ${kh.entries} key line${kh.entries === 1 ? '' : 's'}, none for ${name}`;
}

/**
 * The user's own known_hosts, where ssh looks first: `$HOME/.ssh/known_hosts` (the passwd entry's
 * home when HOME is unset). The CLI pins to it when no pin is given.
 */
export function userKnownHostsPath(env: NodeJS.ProcessEnv): string {
  return join(env.HOME || homedir(), '.ssh', 'known_hosts');
}

/** The host key algorithms (what SSH negotiates) that sign with each key type, in our order. */
const ALGORITHMS_FOR_TYPE: readonly (readonly [string, readonly string[]])[] = [
  ['ssh-ed25519', ['ssh-ed25519']],
  ['ecdsa-sha2-nistp256', ['ecdsa-sha2-nistp256']],
  ['ecdsa-sha2-nistp384', ['ecdsa-sha2-nistp384']],
  ['ecdsa-sha2-nistp521', ['ecdsa-sha2-nistp521']],
  ['ssh-rsa', ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']],
];
const KEY_TYPES = ALGORITHMS_FOR_TYPE.map(([t]) => t);

/**
 * The key types to ask the host for, in turn, until it presents a pinned key: the pinned keys'
 * types, then, when fingerprints are pinned (they do not say their type), every other type ssh2
 * can verify. Types ssh2 cannot verify are left out; if that leaves nothing, all are asked for
 * (the host's key is then refused, with a message that shows it).
 */
export function hostKeyTypesToTry(pin: HostKeyPin): string[] {
  const pinned = KEY_TYPES.filter((t) => pin.keys.some((k) => k.type === t));
  if (pin.fingerprints.length === 0 && pinned.length > 0) return pinned;
  return [...pinned, ...KEY_TYPES.filter((t) => !pinned.includes(t))];
}

/** The algorithms to offer so that the host presents a key of one of these types, first type first. */
export function algorithmsFor(types: readonly string[]): string[] {
  return types.flatMap((t) => ALGORITHMS_FOR_TYPE.find(([k]) => k === t)?.[1] ?? []);
}
