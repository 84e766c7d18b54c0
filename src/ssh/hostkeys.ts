import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** A public host key as it travels in SSH: its type name and wire-format blob. */
export interface HostKey {
  type: string;
  blob: Buffer;
}

/** What the host must present: any of these keys, or any key with one of these fingerprints. */
export interface HostKeyPin {
  keys: HostKey[];
  fingerprints: string[];
  revoked: HostKey[];
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
    const h = createHmac('sha1', entry.hosts.salt).update(name).digest();
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

/** Builds the pin for one host from known_hosts text and/or fingerprints. */
export function pinFor(
  name: string,
  knownHosts: string | undefined,
  fingerprints: string[],
): HostKeyPin {
  const pin: HostKeyPin = { keys: [], fingerprints: [...fingerprints], revoked: [] };
  if (knownHosts) {
    for (const e of parseKnownHosts(knownHosts).entries) {
      if (!entryMatches(e, name)) continue;
      if (e.marker === '@revoked') pin.revoked.push(e.key);
      else if (e.marker === undefined) pin.keys.push(e.key);
    }
  }
  return pin;
}

/** True when the presented key satisfies the pin (and is not revoked). */
export function pinAccepts(pin: HostKeyPin, blob: Buffer): boolean {
  if (pin.revoked.some((k) => k.blob.equals(blob))) return false;
  if (pin.keys.some((k) => k.blob.equals(blob))) return true;
  return pin.fingerprints.includes(fingerprint(blob));
}

/** Fingerprints the pin expects, for messages. */
export function expectedFingerprints(pin: HostKeyPin): string[] {
  return [
    ...new Set([...pin.keys.map((k) => `${k.type} ${fingerprint(k.blob)}`), ...pin.fingerprints]),
  ];
}

const ALGORITHMS_FOR_TYPE: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

/**
 * Host key algorithms to offer: only the pinned keys' types, so the server cannot
 * present an unpinned key of another type first. Undefined = no restriction
 * (fingerprint-only pins do not say which type they are).
 */
export function hostKeyAlgorithms(pin: HostKeyPin): string[] | undefined {
  if (pin.fingerprints.length > 0 || pin.keys.length === 0) return undefined;
  const algos = pin.keys.flatMap((k) => ALGORITHMS_FOR_TYPE[k.type] ?? []);
  return algos.length ? [...new Set(algos)] : undefined;
}
