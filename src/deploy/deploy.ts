/**
 * The deploy stage: nixos-rebuild against the pinned target, a rollback guard armed on the target
 * first, confirmation over a new SSH session, health checks, and the report of what changed.
 */
import { randomBytes } from 'node:crypto';
import { readAsset } from '../assets';
import { VpsNixosError, describeError } from '../errors';
import type { Config } from '../inputs';
import type { ClosureDiff } from '../nix/closure';
import { shellQuote } from '../shell';
import type { RemoteSession } from '../ssh/session';
import { formatTarget } from '../target';
import {
  armGuard,
  confirmGuard,
  disarmGuard,
  guardStatus,
  rollbackGuard,
  type Guard,
  type GuardStatus,
} from './guard';
import { commandCheck, urlCheck, type CheckResult } from './health';
import {
  failedUnitsFrom,
  rebuildArgs,
  rebuildOnPath,
  runRebuild,
  type DeployAction,
  type RebuildCommand,
} from './rebuild';
import { writeDeploySsh } from './sshopts';
import {
  bytesAdded,
  deployDiff,
  parseClosure,
  parseState,
  rebootReasons,
  type TargetState,
} from './state';

export interface DeployLogger {
  info(line: string): void;
  warn(line: string): void;
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

/** The deploy inputs as parsed (inputs.ts), plus what the run supplies. */
export type DeployOptions = Pick<
  Config,
  | 'flake'
  | 'buildHost'
  | 'useSudo'
  | 'confirmTimeoutSeconds'
  | 'healthCheck'
  | 'healthUrl'
  | 'healthTimeoutSeconds'
  | 'rollback'
> & {
  action: Exclude<DeployAction, 'build'>;
  /** A prebuilt system (`--store-path`); with a flake, the path the build stage made (checked). */
  toplevel?: string;
  privateKey: string;
  /** The nixos-rebuild to run (resolve-rebuild's pick); default: the one on PATH. */
  rebuild?: RebuildCommand;
  /** Private dir for the key and known_hosts files nixos-rebuild's ssh reads. */
  tempDir: string;
  /** A new session with the same pin (one attempt, short timeout). */
  reconnect(): Promise<RemoteSession>;
  log: DeployLogger;
  /** How long to wait for the target's own rollback after the confirm window; default 5 min. */
  rollbackWaitMs?: number;
  pollMs?: number;
  rebuildTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
};

export interface DeployResult {
  action: DeployOptions['action'];
  /** The system the deploy activated (or set as boot default), before any rollback. */
  systemPath: string;
  /** What ran before: /run/current-system ('' on the host's first deploy). */
  previousSystemPath: string;
  changed: boolean;
  /** NAR bytes of the store paths the target did not have before (measured on the target). */
  bytesSent: number;
  pathsSent: number;
  rolledBack: boolean;
  rollback?: { by: 'runner' | 'target'; reason: string };
  /** True on the host's first deploy: there was no previous generation to return to. */
  nothingToRollBackTo: boolean;
  diff?: ClosureDiff;
  /** kernel / initrd / kernel-modules that differ from the booted system's. */
  rebootNeeded: string[];
  failedUnits: string[];
  checks: CheckResult[];
  /** /run/current-system at the end, read over a new SSH connection. */
  hostRuns: string;
  rebuild: { from: string; args: string[]; code: number; seconds: number };
  seconds: number;
  /**
   * 'unchanged': the host already ran the configuration's evaluated toplevel (current system and
   * system profile) with no failed unit, so nothing was built, copied or activated (issue 18).
   */
  skipped?: 'unchanged';
  /** force-switch: the host already ran this system, and the switch ran anyway. */
  forced?: boolean;
  error?: { message: string; fix?: string };
}

/**
 * The deploy of a system the host already runs (decided from the probe: current system, system
 * profile, no failed unit): nothing is built, copied or activated. Pure.
 */
export function unchangedDeploy(
  action: DeployResult['action'],
  system: string,
  host: { currentSystem?: string; rebootPending?: string[] },
): DeployResult {
  return {
    action,
    systemPath: system,
    previousSystemPath: host.currentSystem ?? '',
    changed: false,
    bytesSent: 0,
    pathsSent: 0,
    rolledBack: false,
    nothingToRollBackTo: false,
    rebootNeeded: host.rebootPending ?? [],
    failedUnits: [],
    checks: [],
    hostRuns: host.currentSystem ?? '',
    rebuild: { from: '', args: [], code: 0, seconds: 0 },
    seconds: 0,
    skipped: 'unchanged',
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const last = (s: string, n: number) => s.trim().split('\n').slice(-n).join('\n');

/** state.sh: everything before the deploy, or (`units`) only the failed units after it. */
async function readState(
  session: RemoteSession,
  sudo: string,
  what: 'all' | 'units' = 'all',
): Promise<TargetState> {
  const r = await session.exec(`${sudo}sh -s${what === 'units' ? ' -- units' : ''}`, {
    stdin: readAsset('scripts/deploy/state.sh'),
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`reading the target's state failed: ${r.stderr.trim()}`);
  return parseState(r.stdout);
}

/** What runs and what the system profile points at ('' for what is not there), one round trip. */
async function running(session: RemoteSession): Promise<{ current: string; profile: string }> {
  const r = await session.exec(
    'for l in /run/current-system /nix/var/nix/profiles/system; do if [ -e "$l" ]; then readlink -f "$l"; else echo; fi; done',
    { timeoutMs: 30_000 },
  );
  const [current = '', profile = ''] = r.stdout.split('\n').map((l) => l.trim());
  return { current, profile };
}

/** Connects again and again until `deadline`; undefined if the host never answered. */
async function reconnectUntil(
  reconnect: () => Promise<RemoteSession>,
  deadline: number,
  pollMs: number,
): Promise<{ session?: RemoteSession; lastError: string }> {
  let lastError = 'no attempt';
  do {
    try {
      return { session: await reconnect(), lastError: '' };
    } catch (err) {
      lastError = describeError(err).split('\n')[0] as string;
    }
    await sleep(pollMs);
  } while (Date.now() < deadline);
  return { lastError };
}

/**
 * Deploys; a failed deploy does not throw (the result says why). Returns the last live session;
 * every other session it opened is closed, also when it throws.
 */
export async function runDeploy(
  first: RemoteSession,
  opts: DeployOptions,
): Promise<{ result: DeployResult; session?: RemoteSession }> {
  const opened: RemoteSession[] = [first];
  const reconnect = async () => {
    const s = await opts.reconnect();
    opened.push(s);
    return s;
  };
  try {
    const done = await deploy(first, { ...opts, reconnect });
    for (const s of opened) if (s !== done.session) s.close();
    return done;
  } catch (err) {
    for (const s of opened) s.close();
    throw err;
  }
}

async function deploy(
  first: RemoteSession,
  opts: DeployOptions,
): Promise<{ result: DeployResult; session?: RemoteSession }> {
  const start = Date.now();
  const pollMs = opts.pollMs ?? 2000;
  const target = first.target;
  const sudo = opts.useSudo && target.user !== 'root' ? 'sudo -n ' : '';
  const log = opts.log;
  let session: RemoteSession | undefined = first;
  // Before the guard is armed: an error after arming would leave its watcher on the target.
  const cmd = opts.rebuild ?? rebuildOnPath(opts.env?.PATH ?? process.env.PATH);
  if (!cmd)
    throw new VpsNixosError(
      'no nixos-rebuild on PATH',
      'put nixos-rebuild on PATH before this step, or give flake so its own nixpkgs provides one',
    );
  const before = await readState(first, sudo);
  if (!before.isNixos)
    throw new VpsNixosError(
      `${formatTarget(target)} does not run NixOS (/etc/NIXOS is missing): there is nothing to deploy to`,
      'bootstrap it first (method auto or kexec), or check the target',
    );
  const result: DeployResult = {
    action: opts.action,
    systemPath: '',
    previousSystemPath: before.current,
    changed: false,
    bytesSent: 0,
    pathsSent: 0,
    rolledBack: false,
    nothingToRollBackTo: before.current === '',
    rebootNeeded: [],
    failedUnits: [],
    checks: [],
    hostRuns: before.current,
    rebuild: { from: '', args: [], code: 0, seconds: 0 },
    seconds: 0,
  };
  const ssh = writeDeploySsh(opts.tempDir, target, opts.privateKey, first.hostKey);

  // 1. The guard, before anything changes.
  const activates = opts.action === 'switch' || opts.action === 'test';
  let guard: Guard | undefined;
  if (activates && opts.rollback && before.current !== '') {
    if (!before.hasSystemdRun) {
      log.warn('no systemd-run on the target: the automatic rollback cannot be armed');
    } else {
      guard = {
        id: `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
        prev: before.current,
        mode: opts.action === 'test' ? 'test' : 'switch',
        timeoutSeconds: opts.confirmTimeoutSeconds,
      };
      await armGuard(first, sudo, { ...guard, profileLink: before.profileLink });
      log.info(
        `rollback armed on the target: unless confirmed over a new SSH session within ${guard.timeoutSeconds} s of the switch, it reactivates ${guard.prev}${before.profileLink ? ` (${before.profileLink})` : ''}`,
      );
    }
  } else if (activates && before.current === '') {
    log.info('first deploy to this host: there is no previous system to roll back to');
  }

  // 2. nixos-rebuild.
  const args = rebuildArgs({
    action: opts.action,
    flake: opts.flake,
    storePath: opts.flake ? undefined : opts.toplevel,
    targetHost: ssh.targetHost,
    buildHost: opts.buildHost,
    useSudo: opts.useSudo,
  });
  result.rebuild.from = cmd.from;
  result.rebuild.args = args;
  log.info(`nixos-rebuild: ${cmd.from}`);
  const run = await log.group(`nixos-rebuild ${args.join(' ')}`, () =>
    runRebuild(
      cmd,
      args,
      { ...(opts.env ?? process.env), NIX_SSHOPTS: ssh.sshOpts },
      (l) => log.info(l),
      opts.rebuildTimeoutMs ?? 3 * 3600_000,
    ),
  );
  result.rebuild.code = run.code;
  result.rebuild.seconds = run.seconds;
  const reportedFailed = failedUnitsFrom(run.output);
  const rebuildEnd = Date.now();

  // 3. A NEW session: the one nixos-rebuild used may be gone with the old sshd or network.
  first.close();
  session = undefined;
  const confirmBy = rebuildEnd + opts.confirmTimeoutSeconds * 1000;
  const reached = await reconnectUntil(
    opts.reconnect,
    guard ? confirmBy : rebuildEnd + 60_000,
    pollMs,
  );
  session = reached.session;

  let newSystem = '';
  const rollbackWaitMs = opts.rollbackWaitMs ?? 5 * 60_000;
  const waitForRollback = async (g: Guard): Promise<GuardStatus | undefined> => {
    const until = Date.now() + opts.confirmTimeoutSeconds * 1000 + rollbackWaitMs;
    while (Date.now() < until) {
      if (!session) session = (await reconnectUntil(opts.reconnect, until, pollMs)).session;
      if (!session) break;
      try {
        const st = await guardStatus(session, sudo, g.id);
        if (st.result === 'rolled-back' || st.result === 'rollback-failed') return st;
      } catch {
        session.close();
        session = undefined;
      }
      await sleep(pollMs);
    }
    return undefined;
  };
  const rollBack = async (reason: string): Promise<void> => {
    if (!guard) {
      result.error ??= {
        message: reason,
        fix: opts.rollback
          ? 'there was no previous system to roll back to: fix the configuration and deploy again'
          : 'rollback is false: the host keeps the new system; fix it and deploy again',
      };
      return;
    }
    log.warn(`rolling back to ${guard.prev}: ${reason}`);
    if (session) await rollbackGuard(session, sudo, guard.id, reason);
    const st = await waitForRollback(guard);
    finishRollback(st, reason);
  };
  const finishRollback = (st: GuardStatus | undefined, reason: string) => {
    if (!guard) return;
    if (st?.result === 'rolled-back') {
      result.rolledBack = true;
      result.rollback = {
        by: st.by === 'target' ? 'target' : 'runner',
        reason: st.reason || reason,
      };
      result.error ??= {
        message: `deploy failed and was rolled back${st.by === 'target' ? ' by the target itself' : ''}: ${st.reason || reason}`,
        fix: 'the host runs the previous system again; fix the configuration and deploy again',
      };
    } else {
      result.error = {
        message: `deploy failed (${reason}) and the rollback ${st ? `failed (switch-to-configuration exit ${st.rollbackStatus ?? '?'})` : 'did not finish in time'}`,
        fix: `log in on the provider's console and run: nix-env -p /nix/var/nix/profiles/system --rollback && /nix/var/nix/profiles/system/bin/switch-to-configuration switch (the previous system was ${guard.prev})`,
      };
    }
  };

  if (!session) {
    // Unreachable: with a guard the target undoes the switch by itself.
    if (guard) {
      log.warn(
        `no new SSH session within ${opts.confirmTimeoutSeconds} s (${reached.lastError}): waiting for the target to roll back by itself`,
      );
      const st = await waitForRollback(guard);
      finishRollback(
        st,
        `the new system cut SSH: no new session within ${opts.confirmTimeoutSeconds} s (${reached.lastError})`,
      );
    } else {
      result.error = {
        message: `the host does not answer on SSH after nixos-rebuild (${reached.lastError})`,
        fix:
          before.current === ''
            ? "there was no previous system to roll back to: use the provider's console"
            : "rollback is false, so nothing undoes it: use the provider's console (switch to the previous generation)",
      };
    }
  } else {
    const fired = guard ? await guardStatus(session, sudo, guard.id) : undefined;
    const now = fired ? fired.current : (await running(session)).current;
    if (activates) newSystem = now;
    if (guard && fired && fired.result !== 'armed' && fired.result !== 'confirmed') {
      // We got through only after the window: the target is already rolling back by itself.
      newSystem = fired.switchedTo;
      log.warn(`the target is already ${fired.result}: ${fired.reason}`);
      finishRollback(await waitForRollback(guard), fired.reason || 'not confirmed in time');
    }
    const switched = activates ? now !== before.current || newSystem !== now : true;
    if (result.error) {
      // decided above
    } else if (guard && !switched) {
      await disarmGuard(session, sudo, guard.id);
      guard = undefined;
    }
    if (result.error) {
      // decided above
    } else if (run.code !== 0 && !switched) {
      result.error = {
        message: `nixos-rebuild ${opts.action} failed (exit ${run.code}) before switching: nothing changed, the host runs ${before.current || 'what it ran'}`,
        fix: `see its output:\n${last(run.output, 12)}`,
      };
    } else if (run.code !== 0 && opts.action !== 'boot' && opts.action !== 'dry-activate') {
      const after = await readState(session, sudo, 'units').catch(() => undefined);
      const newly = (after?.failed ?? []).filter((u) => !before.failed.includes(u));
      result.failedUnits = [...new Set([...reportedFailed, ...newly])].sort();
      await rollBack(
        result.failedUnits.length
          ? `switch-to-configuration reported failed units (exit 4): ${result.failedUnits.join(', ')}`
          : `nixos-rebuild exited ${run.code} after switching`,
      );
    } else if (run.code !== 0) {
      result.error = {
        message: `nixos-rebuild ${opts.action} failed (exit ${run.code})`,
        fix: `see its output:\n${last(run.output, 12)}`,
      };
    } else if (guard) {
      const answer = await confirmGuard(session, sudo, guard.id);
      if (answer !== 'confirmed') {
        log.warn(`too late to confirm: the target is ${answer}`);
        const st = await waitForRollback(guard);
        finishRollback(st, `not confirmed within ${opts.confirmTimeoutSeconds} s`);
      } else {
        log.info(`confirmed over a new SSH session: ${now}`);
      }
    }
    // Health: only for a confirmed (or unguarded) activation.
    if (!result.error && activates) {
      const after = await readState(session, sudo, 'units');
      const newly = after.failed.filter((u) => !before.failed.includes(u));
      result.failedUnits = newly;
      if (newly.length)
        result.checks.push({
          name: 'systemctl --failed',
          ok: false,
          detail: `newly failed: ${newly.join(', ')}`,
          seconds: 0,
        });
      else
        result.checks.push({
          name: 'systemctl --failed',
          ok: true,
          detail: after.failed.length
            ? `none new (already failed before: ${after.failed.join(', ')})`
            : 'none',
          seconds: 0,
        });
      if (opts.healthCheck)
        result.checks.push(
          await commandCheck(session, sudo, opts.healthCheck, opts.healthTimeoutSeconds * 1000),
        );
      if (opts.healthUrl)
        result.checks.push(await urlCheck(opts.healthUrl, opts.healthTimeoutSeconds * 1000));
      const bad = result.checks.filter((c) => !c.ok);
      if (bad.length) {
        const reason = `health check failed: ${bad.map((c) => `${c.name} (${c.detail})`).join('; ')}`;
        if (guard) await rollBack(reason);
        else if (!switched)
          result.error = {
            message: `${reason}; this deploy changed nothing (the host already ran ${now})`,
            fix: 'fix the service or the check; there is nothing to roll back',
          };
        else
          result.error = {
            message: reason,
            fix:
              before.current === ''
                ? 'there was no previous system to roll back to: fix the configuration and deploy again'
                : 'rollback is false: the host keeps the new system; fix it and deploy again',
          };
      }
    }
  }

  // 4. What changed, and what runs now, over a new session.
  if (!session)
    session = (await reconnectUntil(opts.reconnect, Date.now() + 60_000, pollMs)).session;
  if (session) {
    try {
      const { current, profile } = await running(session);
      result.hostRuns = current;
      result.systemPath =
        opts.action === 'boot'
          ? profile
          : opts.action === 'dry-activate'
            ? (opts.toplevel ?? '')
            : newSystem || (guard ? (await guardStatus(session, sudo, guard.id)).switchedTo : '');
      if (!result.systemPath && opts.toplevel) result.systemPath = opts.toplevel;
      if (result.systemPath) {
        const c = await session.exec(
          `${sudo}sh -s -- ${shellQuote(result.systemPath)} ${before.current ? shellQuote(before.current) : ''}`,
          { stdin: readAsset('scripts/deploy/closure.sh'), timeoutMs: 300_000 },
        );
        if (c.code === 0) {
          const closure = parseClosure(c.stdout);
          result.changed =
            result.systemPath !== (opts.action === 'boot' ? before.profile : before.current);
          const sent = bytesAdded(closure, before.store);
          result.bytesSent = sent.bytes;
          result.pathsSent = sent.paths;
          if (before.current) result.diff = deployDiff(closure);
          result.rebootNeeded = rebootReasons(closure);
        } else {
          log.warn(
            `could not read the new closure on the target: ${c.stderr.trim() || c.stdout.trim()}`,
          );
        }
      }
      if (
        opts.toplevel &&
        result.systemPath &&
        opts.flake &&
        result.systemPath !== opts.toplevel &&
        !result.rolledBack
      )
        log.warn(
          `the host runs ${result.systemPath}, not the system the build stage made (${opts.toplevel})`,
        );
    } catch (err) {
      log.warn(`after the deploy: ${describeError(err)}`);
    }
  } else {
    result.error ??= {
      message: 'the host does not answer on SSH after the deploy',
      fix: "use the provider's console",
    };
  }
  result.seconds = (Date.now() - start) / 1000;
  return { result, session };
}
