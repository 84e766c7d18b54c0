import {
  algorithmsFor,
  describePresented,
  entryMatches,
  expectedFingerprints,
  fingerprint,
  hostKeyTypesToTry,
  judgeHostKey,
  keyTypeOf,
  parseKnownHosts,
  pinAccepts,
  pinFor,
  whyNotPinned,
} from '../../src/ssh/hostkeys';
import { blobOf, hashedName, keyPair, opensshFingerprint } from '../helpers/keys';
import { utils } from 'ssh2';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const a = keyPair().publicKey;
const b = keyPair().publicKey;
const rsa = utils.generateKeyPairSync('rsa', { bits: 2048 }).public;
const ecdsa = utils.generateKeyPairSync('ecdsa', { bits: 256 }).public;
const ecdsa384 = utils.generateKeyPairSync('ecdsa', { bits: 384 }).public;
const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');
const ALL_TYPES = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'ssh-rsa',
];

describe('known_hosts pinning', () => {
  it('matches plain, [host]:port, wildcard and negated patterns', () => {
    const { entries, errors } = parseKnownHosts(
      [
        `# comment`,
        `203.0.113.7,vps.example ${keyPart(a)}`,
        `[203.0.113.7]:2222 ${keyPart(b)}`,
        `*.example.org,!bad.example.org ${keyPart(a)}`,
      ].join('\n'),
    );
    expect(errors).toEqual([]);
    expect(entries.map((e) => entryMatches(e, '203.0.113.7'))).toEqual([true, false, false]);
    expect(entries.map((e) => entryMatches(e, '[203.0.113.7]:2222'))).toEqual([false, true, false]);
    expect(entryMatches(entries[2]!, 'web.example.org')).toBe(true);
    expect(entryMatches(entries[2]!, 'bad.example.org')).toBe(false);
  });

  it('matches hashed |1| entries exactly as ssh-keygen -H writes them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kh-'));
    const file = join(dir, 'known_hosts');
    writeFileSync(file, `[198.51.100.3]:2222 ${keyPart(a)}\n198.51.100.4 ${keyPart(b)}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('198.51.100');
    const pin = pinFor('[198.51.100.3]:2222', text, []);
    expect(pin.keys.map((k) => k.blob.equals(blobOf(a)))).toEqual([true]);
    expect(pinFor('198.51.100.3', text, []).keys).toEqual([]);
    expect(
      pinFor('198.51.100.4', `${hashedName('198.51.100.4')} ${keyPart(b)}`, []).keys,
    ).toHaveLength(1);
  });

  it('computes the OpenSSH SHA256 fingerprint of every key type', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fp-'));
    for (const [i, pub] of [a, rsa, ecdsa, ecdsa384].entries()) {
      writeFileSync(join(dir, `k${i}.pub`), pub + '\n');
      const out = execFileSync('ssh-keygen', ['-lf', join(dir, `k${i}.pub`)]).toString();
      expect(out.split(' ')[1]).toBe(fingerprint(blobOf(pub)));
      expect(fingerprint(blobOf(pub))).toBe(opensshFingerprint(pub));
    }
    expect([rsa, ecdsa, ecdsa384].map((k) => keyTypeOf(blobOf(k)))).toEqual([
      'ssh-rsa',
      'ecdsa-sha2-nistp256',
      'ecdsa-sha2-nistp384',
    ]);
  });

  it('accepts the pinned key or fingerprint, and refuses others and revoked keys', () => {
    const pin = pinFor('h', `h ${keyPart(a)}`, []);
    expect(pinAccepts(pin, blobOf(a))).toBe(true);
    expect(pinAccepts(pin, blobOf(b))).toBe(false);
    expect(pinAccepts(pinFor('h', undefined, [opensshFingerprint(b)]), blobOf(b))).toBe(true);
    const revoked = pinFor('h', `h ${keyPart(a)}\n@revoked h ${keyPart(a)}`, []);
    expect(pinAccepts(revoked, blobOf(a))).toBe(false);
  });

  it('offers only the pinned key types, rsa-sha2 first for RSA', () => {
    expect(hostKeyTypesToTry(pinFor('h', `h ${keyPart(a)}`, []))).toEqual(['ssh-ed25519']);
    const rsaPin = pinFor('h', `h ${keyPart(rsa)}\nh ${keyPart(ecdsa)}`, []);
    expect(hostKeyTypesToTry(rsaPin)).toEqual(['ecdsa-sha2-nistp256', 'ssh-rsa']);
    expect(algorithmsFor(['ssh-rsa'])).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(algorithmsFor(hostKeyTypesToTry(rsaPin))).toEqual([
      'ecdsa-sha2-nistp256',
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
    ]);
  });

  it("tries every key type for a fingerprint, pinned lines' types first", () => {
    // A fingerprint does not say its key type: ed25519 first, as OpenSSH and ssh2 prefer it.
    expect(hostKeyTypesToTry(pinFor('h', undefined, [opensshFingerprint(rsa)]))).toEqual(ALL_TYPES);
    expect(hostKeyTypesToTry(pinFor('h', `h ${keyPart(rsa)}`, [opensshFingerprint(a)]))).toEqual([
      'ssh-rsa',
      ...ALL_TYPES.filter((t) => t !== 'ssh-rsa'),
    ]);
    expect(algorithmsFor(ALL_TYPES)).toEqual([
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
      'ecdsa-sha2-nistp384',
      'ecdsa-sha2-nistp521',
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
    ]);
  });

  it('asks for every type when no pinned key is of a type ssh2 verifies', () => {
    const dss = `ssh-dss ${Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-dss'), Buffer.alloc(8)]).toString('base64')}`;
    const pin = pinFor('h', `h ${dss}`, []);
    expect(pin.keys.map((k) => k.type)).toEqual(['ssh-dss']);
    expect(hostKeyTypesToTry(pin)).toEqual(ALL_TYPES);
  });

  it('a fingerprint pin matches the key with that fingerprint, whatever its type', () => {
    for (const pub of [a, rsa, ecdsa, ecdsa384]) {
      const pin = pinFor('h', undefined, [opensshFingerprint(pub)]);
      expect(judgeHostKey(pin, blobOf(pub))).toEqual({ kind: 'pinned' });
      for (const other of [a, rsa, ecdsa, ecdsa384].filter((o) => o !== pub))
        expect(judgeHostKey(pin, blobOf(other))).toEqual({ kind: 'unpinned' });
    }
  });

  it('says revoked, with the line, even for a key that is also pinned', () => {
    const kh = `h ${keyPart(rsa)}\n# rotated\n@revoked h ${keyPart(rsa)}\n`;
    const pin = pinFor('h', kh, [opensshFingerprint(rsa)]);
    expect(judgeHostKey(pin, blobOf(rsa))).toEqual({ kind: 'revoked', line: 3 });
    expect(pinAccepts(pin, blobOf(rsa))).toBe(false);
    // A @revoked line for another name does not revoke the key here.
    expect(
      judgeHostKey(
        pinFor('h', `@revoked other ${keyPart(rsa)}`, [opensshFingerprint(rsa)]),
        blobOf(rsa),
      ),
    ).toEqual({ kind: 'pinned' });
  });

  it('names each expected pin and where it came from', () => {
    const kh = `other ${keyPart(b)}\n[h]:2222 ${keyPart(ecdsa)}\n`;
    const pin = pinFor('[h]:2222', kh, [opensshFingerprint(rsa), opensshFingerprint(ecdsa)]);
    expect(expectedFingerprints(pin)).toEqual([
      `ecdsa-sha2-nistp256 ${opensshFingerprint(ecdsa)} (known-hosts line 2)`,
      `${opensshFingerprint(rsa)} (host-key-fingerprint)`,
    ]);
    // The reconnect pin (the first session's key) has no line.
    const first = { type: 'ssh-ed25519', blob: blobOf(a) };
    expect(expectedFingerprints({ keys: [first], fingerprints: [], revoked: [] })).toEqual([
      `ssh-ed25519 ${opensshFingerprint(a)}`,
    ]);
  });

  it('describes what the host presented: each key, and the pinned types it lacks', () => {
    const ed = { type: 'ssh-ed25519', blob: blobOf(a) };
    const ec = { type: 'ecdsa-sha2-nistp256', blob: blobOf(ecdsa) };
    expect(describePresented([ed], [])).toBe(`ssh-ed25519 ${opensshFingerprint(a)}`);
    expect(describePresented([ed, ec], ['ssh-rsa'])).toBe(
      `ssh-ed25519 ${opensshFingerprint(a)}, ecdsa-sha2-nistp256 ${opensshFingerprint(ecdsa)} and no ssh-rsa key`,
    );
    expect(describePresented([], ['ssh-ed25519'])).toBe('no ssh-ed25519 key');
  });

  it('says why nothing is pinned for the name', () => {
    expect(whyNotPinned(pinFor('h', `h ${keyPart(a)}`, []), 'h')).toBeUndefined();
    expect(whyNotPinned(pinFor('h', undefined, [opensshFingerprint(a)]), 'h')).toBeUndefined();
    expect(whyNotPinned(pinFor('h', undefined, []), 'h')).toMatch(
      /neither known-hosts nor host-key-fingerprint/,
    );
    expect(
      whyNotPinned(pinFor('[h]:2222', `h ${keyPart(a)}\nother ${keyPart(b)}`, []), '[h]:2222'),
    ).toBe('known-hosts has 2 key lines, none for [h]:2222');
    expect(
      whyNotPinned(pinFor('h', `other ${keyPart(a)}\n@revoked h ${keyPart(b)}`, []), 'h'),
    ).toBe('known-hosts marks every key it has for h @revoked (line 2)');
    expect(whyNotPinned(pinFor('h', `@cert-authority h ${keyPart(b)}`, []), 'h')).toMatch(
      /only @cert-authority lines for h/,
    );
  });

  it('reports malformed lines', () => {
    expect(parseKnownHosts('host ssh-ed25519 notbase64!!').errors[0]).toMatch(/line 1/);
    expect(parseKnownHosts(`host ssh-rsa ${keyPart(a).split(' ')[1]}`).errors[0]).toMatch(
      /not a valid ssh-rsa/,
    );
  });
});
