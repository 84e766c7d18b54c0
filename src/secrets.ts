/** Key material on disk: private dir, 0600 files, removed after the run whatever happened. */
import {
  chmodSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

/** Every private dir of a run starts so; its `.owner` file holds the pid of the run. */
const PREFIX = 'vps-nixos-';
const OWNER = '.owner';

/**
 * A fresh 0700 dir under `parent` for this run's key files and downloads, marked with the pid
 * that owns it: a run killed with SIGKILL cannot remove it, the next one can (sweepKilledRuns).
 */
export function privateRunDir(parent: string): string {
  const dir = mkdtempSync(join(parent, PREFIX));
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, OWNER), `${process.pid}\n`, { mode: 0o600 });
  return dir;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes the private dirs under `parent` that runs killed outright left behind (their key
 * files included): ours (an `.owner` file), owned by this user, whose pid no longer runs.
 * Returns the dirs removed. Never throws: a dir it cannot read or remove is left alone.
 */
export function sweepKilledRuns(parent: string, isAlive = alive): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent).filter((n) => n.startsWith(PREFIX));
  } catch {
    return removed;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const dir = join(parent, name);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const pid = Number(readFileSync(join(dir, OWNER), 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // not ours (no .owner), or gone meanwhile
    }
  }
  return removed;
}

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
  const dir = privateRunDir(parent);
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
