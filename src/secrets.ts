/** Key material on disk: private dir, 0600 files, removed after the run whatever happened. */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface KeyMaterial {
  dir: string;
  privateKeyFile: string;
  knownHostsFile?: string;
}

/** Registers every line of a secret with the masker (GitHub masks line by line). */
export function maskLines(secret: string, setSecret: (line: string) => void): void {
  for (const line of secret.split(/\r?\n/)) {
    if (line.trim() !== '') setSecret(line.trim());
  }
}

/** Writes the key (and known_hosts) into a fresh 0700 dir under `parent`, files 0600. */
export function writeKeyMaterial(
  parent: string,
  privateKey: string,
  knownHosts?: string,
): KeyMaterial {
  const dir = mkdtempSync(join(parent, 'vps-nixos-'));
  chmodSync(dir, 0o700);
  const privateKeyFile = join(dir, 'id');
  // OpenSSH refuses a key without its final newline.
  writeFileSync(privateKeyFile, privateKey.trim() + '\n', { mode: 0o600 });
  let knownHostsFile: string | undefined;
  if (knownHosts !== undefined) {
    knownHostsFile = join(dir, 'known_hosts');
    writeFileSync(knownHostsFile, knownHosts.trim() + '\n', { mode: 0o600 });
  }
  return { dir, privateKeyFile, knownHostsFile };
}

/** Removes the key dir; reports instead of throwing, so cleanup never fails a job. */
export function removeKeyMaterial(dir: string | undefined, warn: (msg: string) => void): void {
  if (!dir) return;
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    warn(`could not remove key material in ${dir}: ${(err as Error).message}`);
  }
}
