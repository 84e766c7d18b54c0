/** The OpenSSH side of a deploy: nixos-rebuild and Nix's ssh stores get the same pin we checked. */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors';
import { formatKey, type HostKey } from '../ssh/hostkeys';
import type { Target } from '../target';

export interface DeploySsh {
  /** For NIX_SSHOPTS: split on whitespace by nixos-rebuild and Nix, so no path may hold a space. */
  sshOpts: string;
  /** `user@host` as nixos-rebuild's --target-host wants it (the port is in sshOpts). */
  targetHost: string;
  knownHostsFile: string;
  /** Absent when the key is the ssh-agent's (SSH_AUTH_SOCK, inherited by ssh). */
  keyFile?: string;
}

/** The known_hosts line that pins exactly the key our own session was verified against. */
export function knownHostsLine(target: Target, key: HostKey): string {
  return `${target.knownHostsName} ${formatKey(key)}`;
}

/**
 * `-o …` options: only this key (or, without a key file, the ssh-agent's keys: ssh reads the
 * agent from SSH_AUTH_SOCK, as our own session did, whatever the user's ssh config names), only
 * this host key, never a prompt, a dead link noticed in ~60 s.
 */
export function nixSshOpts(target: Target, files: { knownHostsFile: string; keyFile?: string }) {
  for (const [what, path] of Object.entries(files)) {
    if (path !== undefined && /\s/.test(path))
      throw new InputError(
        'RUNNER_TEMP',
        `the ${what} path '${path}' contains whitespace, which NIX_SSHOPTS cannot carry`,
        'run from a temp directory without spaces (TMPDIR / RUNNER_TEMP)',
      );
  }
  return [
    `-o UserKnownHostsFile=${files.knownHostsFile}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o StrictHostKeyChecking=yes',
    '-o CheckHostIP=no',
    ...(files.keyFile !== undefined
      ? [`-o IdentityFile=${files.keyFile}`, '-o IdentitiesOnly=yes']
      : ['-o IdentityAgent=SSH_AUTH_SOCK', '-o IdentitiesOnly=no']),
    '-o BatchMode=yes',
    '-o ConnectTimeout=30',
    '-o ServerAliveInterval=15',
    '-o ServerAliveCountMax=4',
    `-p ${target.port}`,
  ].join(' ');
}

/**
 * Writes the key (none when it is the ssh-agent's) and the one-line known_hosts (0600, in a 0700
 * dir under `tempDir`).
 */
export function writeDeploySsh(
  tempDir: string,
  target: Target,
  privateKey: string | undefined,
  hostKey: HostKey,
): DeploySsh {
  const dir = join(tempDir, 'deploy-ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  let keyFile: string | undefined;
  if (privateKey !== undefined) {
    keyFile = join(dir, 'id');
    writeFileSync(keyFile, privateKey.trim() + '\n', { mode: 0o600 });
  }
  const knownHostsFile = join(dir, 'known_hosts');
  writeFileSync(knownHostsFile, knownHostsLine(target, hostKey) + '\n', { mode: 0o600 });
  return {
    sshOpts: nixSshOpts(target, { knownHostsFile, keyFile }),
    targetHost: `${target.user}@${target.host}`,
    knownHostsFile,
    keyFile,
  };
}
