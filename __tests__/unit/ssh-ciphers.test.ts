/**
 * The ciphers we offer (issue 17): chacha20-poly1305 first, then AES-GCM, then AES-CTR; only names
 * this ssh2 accepts; ssh2's defaults when OpenSSL offers none of ours. And the kexec phase's disk
 * need: three copies of the installer.
 */
import { getCiphers } from 'node:crypto';
import { cipherPreference } from '../../src/ssh/session';
import { kexecDiskNeed } from '../../src/phases/kexec';

const MiB = 2 ** 20;

describe('cipherPreference', () => {
  it('puts chacha20-poly1305 first, then AES-GCM, then AES-CTR', () => {
    expect(cipherPreference()).toEqual([
      'chacha20-poly1305@openssh.com',
      'aes128-gcm@openssh.com',
      'aes256-gcm@openssh.com',
      'aes128-ctr',
      'aes192-ctr',
      'aes256-ctr',
    ]);
  });

  it('offers only names this ssh2 accepts (it throws on any other)', () => {
    // ssh2's own list, filtered by the same OpenSSL test; internal, so only read here.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { SUPPORTED_CIPHER } = require('ssh2/lib/protocol/constants.js') as {
      SUPPORTED_CIPHER: string[];
    };
    for (const c of cipherPreference() ?? []) expect(SUPPORTED_CIPHER).toContain(c);
  });

  it('leaves out what OpenSSL lacks, keeping the order', () => {
    const withoutChacha = getCiphers().filter((c) => c !== 'chacha20');
    expect(cipherPreference(withoutChacha)?.[0]).toBe('aes128-gcm@openssh.com');
    expect(cipherPreference(['aes-256-ctr', 'aes-128-gcm'])).toEqual([
      'aes128-gcm@openssh.com',
      'aes256-ctr',
    ]);
  });

  it("falls back to ssh2's defaults when none of ours is there", () => {
    expect(cipherPreference([])).toBeUndefined();
  });
});

describe('kexecDiskNeed', () => {
  it('counts the tarball, its unpacked kernel and initrd, and the initrd copy run appends to', () => {
    expect(kexecDiskNeed(84 * MiB)).toBe(3 * 84 * MiB + 64 * MiB);
    expect(kexecDiskNeed(0)).toBe(64 * MiB);
  });
});
