import {
  entryMatches,
  fingerprint,
  hostKeyAlgorithms,
  parseKnownHosts,
  pinAccepts,
  pinFor,
} from '../../src/ssh/hostkeys';
import { blobOf, hashedName, keyPair, opensshFingerprint } from '../helpers/keys';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const a = keyPair().publicKey;
const b = keyPair().publicKey;
const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');

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

  it('computes the OpenSSH SHA256 fingerprint', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fp-'));
    writeFileSync(join(dir, 'k.pub'), a + '\n');
    const out = execFileSync('ssh-keygen', ['-lf', join(dir, 'k.pub')]).toString();
    expect(out.split(' ')[1]).toBe(fingerprint(blobOf(a)));
    expect(fingerprint(blobOf(a))).toBe(opensshFingerprint(a));
  });

  it('accepts the pinned key or fingerprint, and refuses others and revoked keys', () => {
    const pin = pinFor('h', `h ${keyPart(a)}`, []);
    expect(pinAccepts(pin, blobOf(a))).toBe(true);
    expect(pinAccepts(pin, blobOf(b))).toBe(false);
    expect(pinAccepts(pinFor('h', undefined, [opensshFingerprint(b)]), blobOf(b))).toBe(true);
    const revoked = pinFor('h', `h ${keyPart(a)}\n@revoked h ${keyPart(a)}`, []);
    expect(pinAccepts(revoked, blobOf(a))).toBe(false);
  });

  it('offers only the pinned key types', () => {
    expect(hostKeyAlgorithms(pinFor('h', `h ${keyPart(a)}`, []))).toEqual(['ssh-ed25519']);
    expect(hostKeyAlgorithms(pinFor('h', undefined, [opensshFingerprint(a)]))).toBeUndefined();
  });

  it('reports malformed lines', () => {
    expect(parseKnownHosts('host ssh-ed25519 notbase64!!').errors[0]).toMatch(/line 1/);
    expect(parseKnownHosts(`host ssh-rsa ${keyPart(a).split(' ')[1]}`).errors[0]).toMatch(
      /not a valid ssh-rsa/,
    );
  });
});
