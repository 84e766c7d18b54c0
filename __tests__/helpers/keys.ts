import { utils } from 'ssh2';
import { createHash, createHmac, randomBytes } from 'node:crypto';

/** A fresh ed25519 key pair in OpenSSH format (private) and authorized_keys format (public). */
export function keyPair(): { privateKey: string; publicKey: string } {
  const k = utils.generateKeyPairSync('ed25519');
  return { privateKey: k.private, publicKey: k.public };
}

/** The key blob of an authorized_keys / .pub line. */
export function blobOf(publicLine: string): Buffer {
  return Buffer.from(publicLine.trim().split(/\s+/)[1] as string, 'base64');
}

/** OpenSSH's SHA256 fingerprint, computed independently of src/ for cross-checking. */
export function opensshFingerprint(publicLine: string): string {
  return (
    'SHA256:' + createHash('sha256').update(blobOf(publicLine)).digest('base64').replace(/=+$/, '')
  );
}

/** A hashed known_hosts name as `ssh-keygen -H` writes it. */
export function hashedName(name: string): string {
  const salt = randomBytes(20);
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}
