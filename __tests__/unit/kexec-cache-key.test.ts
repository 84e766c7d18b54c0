import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flakeDirHash } from '../../src/nix/kexec';

describe('the kexec installer cache key', () => {
  it('changes with any file under nix/ (module, run script, lock) and only then', () => {
    const a = mkdtempSync(join(tmpdir(), 'nixdir-'));
    cpSync(join(__dirname, '../../nix'), a, { recursive: true });
    const h1 = flakeDirHash(a);
    expect(flakeDirHash(a)).toBe(h1);
    writeFileSync(join(a, 'flake.lock'), '{}');
    const h2 = flakeDirHash(a);
    expect(h2).not.toBe(h1);
    writeFileSync(join(a, 'kexec-installer', 'run.sh'), '#!/bin/sh\n');
    expect(flakeDirHash(a)).not.toBe(h2);
  });
});
