/**
 * The local test VPS as seen from a VM test. VM tests run inside the VPS's network namespace
 * (`test/vps/vps exec -- jest --selectProjects vm`), which sets VPS_JSON to the `vps up` line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/inputs';
import { pinFor } from '../../src/ssh/hostkeys';
import { connect, type RemoteSession } from '../../src/ssh/session';

export interface Vps {
  target: string;
  sshPrivateKeyFile: string;
  knownHostsFile: string;
  netns: string;
  disk: string;
  ramMiB: number;
  kind: 'vm' | 'container';
  runDir: string;
  address: string;
  /** `SHA256:…` of the VPS's host key. */
  hostKeyFingerprint: string;
}

/** The VPS this run was started with; throws with how to run VM tests when there is none. */
export function currentVps(): Vps {
  const json = process.env.VPS_JSON;
  if (!json)
    throw new Error(
      'VM tests run inside a test VPS netns: test/vps/vps up --json, then test/vps/vps exec -- npx jest --selectProjects vm',
    );
  return JSON.parse(json) as Vps;
}

/** A Config that pins the VPS's host key, as a user's would. */
export function vpsConfig(vps: Vps, extra: Record<string, string> = {}): Config {
  return parseConfig({
    target: vps.target,
    'ssh-private-key': readFileSync(vps.sshPrivateKeyFile, 'utf8'),
    'known-hosts': readFileSync(vps.knownHostsFile, 'utf8'),
    'plan-only': 'true',
    ...extra,
  });
}

/** A new session to the VPS, pinned to its host key as the config pins it. */
export function openVps(cfg: Config, retries = 5): Promise<RemoteSession> {
  return connect({
    target: cfg.target!,
    privateKey: cfg.sshPrivateKey!,
    pin: pinFor(cfg.target!.knownHostsName, cfg.knownHosts, []),
    connectTimeoutMs: 30_000,
    retries,
  });
}

/** Runs `fn` on a session of its own, closed afterwards. */
export async function withVps<T>(
  cfg: Config,
  fn: (session: RemoteSession) => Promise<T>,
  retries?: number,
): Promise<T> {
  const session = await openVps(cfg, retries);
  try {
    return await fn(session);
  } finally {
    session.close();
  }
}

export interface Standins {
  kexecTarball: string;
  kexecSha256: string;
  kexecBytes: number;
  toplevel: string;
  diskScript: string;
  /** Deploy-test toplevels by name: ok, ok2, new-kernel, exit4, unhealthy, cut-sshd. */
  variants: Record<string, string>;
}

/** The harness's stand-ins (see test/STANDINS.md), ballast 0 for fast tests. */
export function standins(ballast = '0'): Standins {
  const out = execFileSync(
    join(__dirname, '../../test/vps/vps'),
    ['standins', '--ballast', ballast, '--json'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const s = JSON.parse(out.trim().split('\n').pop() as string) as Omit<Standins, 'kexecBytes'>;
  return { ...s, kexecBytes: statSync(s.kexecTarball).size };
}

/**
 * Puts the VM back in the state it booted in, whichever VM suite runs first: the first caller
 * snapshots it as `fresh`, later callers restore that snapshot.
 */
export function freshVm(vps: Vps): void {
  const vpsCli = join(__dirname, '../../test/vps/vps');
  const marker = join(vps.runDir, 'fresh-snapshot-saved');
  let saved = false;
  try {
    statSync(marker);
    saved = true;
  } catch {
    // not yet
  }
  execFileSync(vpsCli, [saved ? 'loadvm' : 'savevm', 'fresh', '--run-dir', vps.runDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (!saved) writeFileSync(marker, '');
}
