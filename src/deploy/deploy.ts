/**
 * The deploy stage: the system the runner built copied to the pinned target and switched to there
 * (or nixos-rebuild, with build-host), a rollback guard armed on the target
 * first, confirmation over a new SSH session, health checks, and the report of what changed.
 */
import { randomBytes } from 'node:crypto';
import { VpsNixosError, describeError } from '../errors';
import type { Config } from '../inputs';
import type { ClosureDiff, PathInfo } from '../nix/closure';
import { shellQuote } from '../shell';
import { runScript } from '../ssh/script';
import { RemoteTimeout, type ExecResult, type RemoteSession } from '../ssh/session';
import { formatTarget } from '../target';
import {
  answered,
  disarmGuard,
  guardFailure,
  guardStatus,
  rollbackGuard,
  TargetScriptError,
  type Guard,
  type GuardStatus,
} from './guard';
import { commandCheck, urlCheck, type CheckResult } from './health';
import {
  failedUnitsFrom,
  rebuildArgs,
  rebuildOnPath,
  type DeployAction,
  type RebuildCommand,
} from './rebuild';
import { writeDeploySsh } from './sshopts';
import { runStreaming } from './stream';
import { copySystem, switchOnTarget, type DeployWith, type StepRun } from './switch';
import {
  bytesAdded,
  deployDiff,
  parseAfter,
  parseClosure,
  parseState,
  rebootReasons,
  type AfterFacts,
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
  /**
   * `switch`: copy `toplevel` (built on this runner) and switch to it over the guard's session;
   * `nixos-rebuild`: nixos-rebuild --target-host (with build-host). Decided in pipeline/decide.ts.
   */
  deployWith: DeployWith;
  /** A prebuilt system (`--store-path`); with a flake, the path the build stage made (checked). */
  toplevel?: string;
  /**
   * The closure of `toplevel` as the runner's store has it (the build stage's report): the target
   * then does not list it again after the switch.
   */
  toplevelClosure?: PathInfo[];
  /** The key the copy's (or nixos-rebuild's) ssh logs in with; without it, the ssh-agent's (SSH_AUTH_SOCK). */
  privateKey?: string;
  /** The nixos-rebuild to run (resolve-rebuild's pick); default: the one on PATH. Not for `switch`. */
  rebuild?: RebuildCommand;
  /** Private dir for the key and known_hosts files nix-copy-closure's (or nixos-rebuild's) ssh reads. */
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
const NO_SYSTEMD_RUN_KEEPS =
  'the target has no systemd-run, so no rollback could be armed: the host keeps the new system; fix it and deploy again';
const last = (s: string, n: number) => s.trim().split('\n').slice(-n).join('\n');

const firstLine = (err: unknown) => describeError(err).split('\n')[0] as string;

/**
 * state.sh, one round trip before anything changes: the state, and with `arm`, the rollback guard
 * installed and armed against what it read (when there is something to guard: state.sh's header).
 */
async function readBefore(
  session: RemoteSession,
  sudo: string,
  arm?: { id: string; timeoutSeconds: number; mode: Guard['mode'] },
): Promise<{ state: TargetState; stderr: string }> {
  const r = await runScript(session, 'deploy/state.sh', {
    sudo,
    args: arm ? ['arm', arm.id, String(arm.timeoutSeconds), arm.mode] : [],
    embed: arm ? { guard_sh: 'deploy/guard.sh' } : undefined,
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`reading the target's state failed: ${r.stderr.trim()}`);
  return { state: parseState(r.stdout), stderr: r.stderr };
}

/** What after.sh is asked to read and do (its header says when each step runs). */
interface AfterRequest {
  guardId?: string;
  disarm?: boolean;
  confirm?: boolean;
  units?: boolean;
  check?: { command: string; timeoutMs: number };
  /** known: the system whose closure the runner has ('' for none). */
  closure?: { of: string; prev: string; known: string };
}

/**
 * after.sh, one round trip. A dropped session rejects as exec does; what the target answered with
 * a failure (a guard.sh verb's exit status, the script's own) throws TargetScriptError.
 */
async function readAfter(
  session: RemoteSession,
  sudo: string,
  req: AfterRequest,
): Promise<AfterFacts> {
  const args: string[] = [];
  if (req.guardId) args.push('--guard', req.guardId);
  if (req.guardId && req.disarm) args.push('--disarm');
  if (req.guardId && req.confirm) args.push('--confirm');
  if (req.units) args.push('--units');
  if (req.check) args.push('--check', String(req.check.timeoutMs / 1000), req.check.command);
  if (req.closure) args.push('--closure', req.closure.of, req.closure.prev, req.closure.known);
  const r = answered(
    await runScript(session, 'deploy/after.sh', {
      sudo,
      args,
      embed: { closure_sh: 'deploy/closure.sh' },
      // guard.sh verbs (60 s each, as alone), the check's try, closure.sh (as alone)
      timeoutMs: 3 * 60_000 + (req.check?.timeoutMs ?? 0) + 300_000,
    }),
    'after.sh',
  );
  if (r.code !== 0)
    throw new TargetScriptError(
      `reading the target after the switch failed (exit ${r.code}): ${r.stderr.trim()}`,
    );
  const facts = parseAfter(r.stdout);
  const steps = [
    ['status', facts.guard],
    ['disarm', facts.disarm],
    ['confirm', facts.confirm],
  ] as const;
  for (const [verb, answer] of steps)
    if (answer && answer.exit !== 0) throw guardFailure(verb, answer.exit, answer.error, r.stderr);
  if (req.guardId && !facts.guard)
    throw new TargetScriptError(`after.sh did not read the rollback guard: ${r.stderr.trim()}`);
  return facts;
}

/**
 * `session`, except that its first run of `command` gets `first` (the answer to a run already
 * made, inside after.sh) instead of running it again.
 */
function answeredOnce(
  session: RemoteSession,
  command: string,
  first: () => Promise<ExecResult>,
): RemoteSession {
  let pending = true;
  return {
    target: session.target,
    hostKey: session.hostKey,
    cipher: session.cipher,
    exec(c, o) {
      if (!pending || c !== command) return session.exec(c, o);
      pending = false;
      return first();
    },
    close: () => session.close(),
  };
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
      lastError = firstLine(err);
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
  const byRebuild = opts.deployWith === 'nixos-rebuild';
  // Before the guard is armed: an error after arming would leave its watcher on the target.
  const cmd = byRebuild
    ? (opts.rebuild ?? rebuildOnPath(opts.env?.PATH ?? process.env.PATH))
    : undefined;
  if (byRebuild && !cmd)
    throw new VpsNixosError(
      'no nixos-rebuild on PATH',
      'put nixos-rebuild on PATH before this step, or give flake so its own nixpkgs provides one',
    );
  const toplevel = opts.toplevel;
  if (!byRebuild && !toplevel)
    throw new VpsNixosError(
      'the deploy has no system to switch to: nothing was built and no toplevel was given',
      'give flake (built on this runner) or toplevel',
    );
  const ssh = writeDeploySsh(opts.tempDir, target, opts.privateKey, first.hostKey);
  const args = byRebuild
    ? rebuildArgs({
        action: opts.action,
        flake: opts.flake,
        storePath: opts.flake ? undefined : opts.toplevel,
        targetHost: ssh.targetHost,
        buildHost: opts.buildHost,
        useSudo: opts.useSudo,
      })
    : [opts.action, toplevel as string];
  const env = opts.env ?? process.env;
  const stepTimeoutMs = opts.rebuildTimeoutMs ?? 3 * 3600_000;
  // Our own switch copies while state.sh reads the host and arms the guard: the copy only adds
  // store paths, and the switch waits for both. Its lines are logged once the switch's group opens.
  const copyLines: string[] = [];
  const copying = byRebuild
    ? undefined
    : copySystem(ssh, toplevel as string, env, (l) => copyLines.push(l), stepTimeoutMs);

  // 1. The state and, before anything changes, the guard: one round trip (state.sh arms it only
  // where there is a previous system and systemd-run, as decided below from what it read).
  const activates = opts.action === 'switch' || opts.action === 'test';
  const armAs = {
    id: `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
    timeoutSeconds: opts.confirmTimeoutSeconds,
    mode: opts.action === 'test' ? ('test' as const) : ('switch' as const),
  };
  // An error before the switch waits for the copy to end first (it never rejects), so no child
  // process outlives the deploy.
  const afterCopy = async (err: unknown) => {
    await copying;
    return err;
  };
  const read = await readBefore(first, sudo, activates && opts.rollback ? armAs : undefined).catch(
    async (err: unknown) => {
      throw await afterCopy(err);
    },
  );
  const before = read.state;
  if (!before.isNixos) {
    throw await afterCopy(
      new VpsNixosError(
        `${formatTarget(target)} does not run NixOS (/etc/NIXOS is missing): there is nothing to deploy to`,
        'bootstrap it first (method auto or kexec), or check the target',
      ),
    );
  }
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

  let guard: Guard | undefined;
  if (activates && opts.rollback && before.current !== '') {
    if (!before.hasSystemdRun) {
      log.warn('no systemd-run on the target: the automatic rollback cannot be armed');
    } else {
      const arm = before.arm;
      if (!arm)
        throw await afterCopy(
          new TargetScriptError(`state.sh did not arm the rollback guard: ${read.stderr.trim()}`),
        );
      if (!arm.installed)
        throw await afterCopy(
          new TargetScriptError(`could not upload the rollback guard: ${read.stderr.trim()}`),
        );
      if (arm.exit !== 0)
        throw await afterCopy(guardFailure('arm', arm.exit, arm.error, read.stderr));
      guard = {
        id: armAs.id,
        prev: before.current,
        mode: armAs.mode,
        timeoutSeconds: armAs.timeoutSeconds,
      };
      for (const other of arm.superseded)
        log.warn(
          `stopped the rollback guard of an earlier run (${other}) that was still armed: it would have rolled this deploy back`,
        );
      log.info(
        `rollback armed on the target: unless confirmed over a new SSH session within ${guard.timeoutSeconds} s of the switch, it reactivates ${guard.prev}${before.profileLink ? ` (${before.profileLink})` : ''}`,
      );
    }
  } else if (activates && before.current === '') {
    log.info('first deploy to this host: there is no previous system to roll back to');
  }

  // 2. The copy and the switch: ours, or nixos-rebuild.
  result.rebuild.args = args;
  let run: StepRun;
  if (cmd) {
    result.rebuild.from = cmd.from;
    log.info(`nixos-rebuild: ${cmd.from}`);
    run = await log.group(`nixos-rebuild ${args.join(' ')}`, async () => ({
      ...(await runStreaming(
        cmd,
        args,
        { ...env, NIX_SSHOPTS: ssh.sshOpts },
        (l) => log.info(l),
        stepTimeoutMs,
      )),
      step: `nixos-rebuild ${opts.action}`,
    }));
  } else {
    result.rebuild.from = 'nix-copy-closure, then switch-to-configuration on the target';
    run = await log.group(`switch ${opts.action} ${toplevel}`, async () => {
      const copied = (await copying) as StepRun;
      for (const l of copyLines) log.info(l);
      log.info(
        `copied ${toplevel}'s closure in ${copied.seconds.toFixed(1)} s (nix-copy-closure, exit ${copied.code})`,
      );
      if (copied.code !== 0) return copied;
      const switched = await switchOnTarget(
        first,
        sudo,
        opts.action,
        toplevel as string,
        (l) => log.info(l),
        stepTimeoutMs,
      );
      return { ...switched, seconds: copied.seconds + switched.seconds };
    });
  }
  result.rebuild.code = run.code;
  result.rebuild.seconds = run.seconds;
  const reportedFailed = failedUnitsFrom(run.output);
  const rebuildEnd = Date.now();

  // 3. A NEW session: the one the switch used may be gone with the old sshd or network.
  first.close();
  session = undefined;
  const confirmBy = rebuildEnd + opts.confirmTimeoutSeconds * 1000;
  const reached = await reconnectUntil(
    opts.reconnect,
    guard ? confirmBy : rebuildEnd + 60_000,
    pollMs,
  );
  session = reached.session;
  let lastError = reached.lastError;

  let newSystem = '';
  // What runs and the system profile as read last (undefined: not read since it may have changed),
  // and the guard's status as read last: the report takes them, or reads again.
  let hostRunsNow: string | undefined;
  let profileNow: string | undefined;
  let lastStatus: GuardStatus | undefined;
  const rollbackWaitMs = opts.rollbackWaitMs ?? 5 * 60_000;
  const waitForRollback = async (g: Guard): Promise<GuardStatus | undefined> => {
    hostRunsNow = undefined;
    const until = Date.now() + opts.confirmTimeoutSeconds * 1000 + rollbackWaitMs;
    while (Date.now() < until) {
      if (!session) session = (await reconnectUntil(opts.reconnect, until, pollMs)).session;
      if (!session) break;
      try {
        const st = await guardStatus(session, sudo, g.id);
        lastStatus = st;
        if (st.result === 'rolled-back' || st.result === 'rollback-failed') {
          hostRunsNow = st.current;
          return st;
        }
      } catch {
        session.close();
        session = undefined;
      }
      await sleep(pollMs);
    }
    return undefined;
  };
  // Asks the guard to roll back; a session that drops on the way is replaced and the guard asked
  // again (one already rolling back just says so).
  const requestRollback = async (g: Guard, reason: string): Promise<void> => {
    const until = Date.now() + opts.confirmTimeoutSeconds * 1000 + rollbackWaitMs;
    for (;;) {
      if (!session) session = (await reconnectUntil(opts.reconnect, until, pollMs)).session;
      if (!session) return;
      try {
        await rollbackGuard(session, sudo, g.id, reason);
        return;
      } catch (err) {
        if (err instanceof TargetScriptError) throw err;
        log.warn(`the SSH session dropped while asking for the rollback (${firstLine(err)})`);
        session.close();
        session = undefined;
        if (Date.now() >= until) return;
      }
    }
  };
  const rollBack = async (reason: string): Promise<void> => {
    if (!guard) {
      result.error ??= {
        message: reason,
        fix: !opts.rollback
          ? 'rollback is false: the host keeps the new system; fix it and deploy again'
          : before.current === ''
            ? 'there was no previous system to roll back to: fix the configuration and deploy again'
            : NO_SYSTEMD_RUN_KEEPS,
      };
      return;
    }
    log.warn(`rolling back to ${guard.prev}: ${reason}`);
    hostRunsNow = undefined;
    await requestRollback(guard, reason);
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

  // One round trip (after.sh) reads and does what the decisions below need, in the order they
  // need it: the guard's status; disarm (nothing switched) or confirm (switched, and the switch
  // exited 0: what the runner decides from that status alone); the failed units; the
  // health-check command's first try once confirmed; the new closure; what runs at the end.
  const healthy = run.code === 0 && activates;
  // commandCheck's own limit for one try
  const checkTryMs = Math.max(5000, Math.min(opts.healthTimeoutSeconds * 1000, 120_000));
  const closureOf =
    opts.action === 'boot' ? 'profile' : opts.action === 'dry-activate' ? opts.toplevel : 'new';
  const known = (opts.toplevelClosure && opts.toplevel) || '';
  const afterRequest = (mayConfirm: boolean): AfterRequest => ({
    guardId: guard?.id,
    disarm: true,
    confirm: healthy && mayConfirm,
    units: activates,
    check:
      healthy && opts.healthCheck
        ? { command: opts.healthCheck, timeoutMs: checkTryMs }
        : undefined,
    closure: closureOf ? { of: closureOf, prev: before.current, known } : undefined,
  });
  let facts: AfterFacts | undefined;
  // Why the new session dropped before it answered: the runner never confirms after that (SSH
  // with the new system is in doubt), it reads what happened over another session instead.
  let dropped = '';
  if (session) {
    try {
      facts = await readAfter(session, sudo, afterRequest(true));
    } catch (err) {
      if (err instanceof TargetScriptError) throw err;
      dropped = firstLine(err);
      session.close();
      session = undefined;
      log.warn(
        `the new SSH session dropped before it answered (${dropped})${guard ? ': not confirming; reading the rollback guard over another session' : ''}`,
      );
      const again = await reconnectUntil(
        opts.reconnect,
        Date.now() + (guard ? opts.confirmTimeoutSeconds * 1000 + rollbackWaitMs : 60_000),
        pollMs,
      );
      session = again.session;
      lastError = again.lastError;
      if (session) {
        try {
          facts = await readAfter(session, sudo, afterRequest(false));
        } catch (err2) {
          if (err2 instanceof TargetScriptError) throw err2;
          lastError = firstLine(err2);
          session.close();
          session = undefined;
        }
      }
    }
  }

  if (!facts || !session) {
    // Unreachable: with a guard the target undoes the switch by itself.
    if (guard) {
      log.warn(
        dropped
          ? `the new SSH session dropped (${dropped}) and no other answered (${lastError}): waiting for the target to roll back by itself`
          : `no new SSH session within ${opts.confirmTimeoutSeconds} s (${reached.lastError}): waiting for the target to roll back by itself`,
      );
      const st = await waitForRollback(guard);
      finishRollback(
        st,
        dropped
          ? `the SSH session with the new system dropped (${dropped}) and no other answered (${lastError})`
          : `the new system cut SSH: no new session within ${opts.confirmTimeoutSeconds} s (${reached.lastError})`,
      );
    } else {
      result.error = {
        message: `the host does not answer on SSH after ${run.step} (${lastError || dropped})`,
        fix:
          before.current === ''
            ? "there was no previous system to roll back to: use the provider's console"
            : !opts.rollback
              ? "rollback is false, so nothing undoes it: use the provider's console (switch to the previous generation)"
              : !activates
                ? `action ${opts.action} activated nothing, so no rollback was armed: use the provider's console`
                : "the target has no systemd-run, so no rollback was armed and nothing undoes it: use the provider's console (switch to the previous generation)",
      };
    }
  } else {
    hostRunsNow = facts.end.current;
    profileNow = facts.end.profile;
    const fired = guard ? facts.guard : undefined;
    lastStatus = fired;
    const now = fired ? fired.current : facts.current;
    if (activates) newSystem = now;
    if (guard && fired && !['armed', 'confirmed', 'disarmed'].includes(fired.result)) {
      // We got through only after the window: the target is already rolling back by itself.
      newSystem = fired.switchedTo;
      log.warn(`the target is already ${fired.result}: ${fired.reason}`);
      finishRollback(await waitForRollback(guard), fired.reason || 'not confirmed in time');
    }
    const switched = activates ? now !== before.current || newSystem !== now : true;
    if (result.error) {
      // decided above
    } else if (guard && !switched) {
      // after.sh disarmed it (it was armed and nothing switched), or did so before it dropped
      if (!facts.disarm && fired?.result !== 'disarmed') await disarmGuard(session, sudo, guard.id);
      guard = undefined;
    }
    if (result.error) {
      // decided above
    } else if (run.code !== 0 && !switched) {
      result.error = {
        message: `${run.step} failed (exit ${run.code}) before switching: nothing changed, the host runs ${before.current || 'what it ran'}`,
        fix: `see its output:\n${last(run.output, 12)}`,
      };
    } else if (run.code !== 0 && opts.action !== 'boot' && opts.action !== 'dry-activate') {
      const newly = (facts.failed ?? []).filter((u) => !before.failed.includes(u));
      result.failedUnits = [...new Set([...reportedFailed, ...newly])].sort();
      await rollBack(
        result.failedUnits.length
          ? `switch-to-configuration reported failed units (exit 4): ${result.failedUnits.join(', ')}`
          : `${run.step} exited ${run.code} after switching`,
      );
    } else if (run.code !== 0) {
      result.error = {
        message: `${run.step} failed (exit ${run.code})`,
        fix: `see its output:\n${last(run.output, 12)}`,
      };
    } else if (guard) {
      // after.sh confirmed (the guard was armed and the system switched), or found it confirmed
      const answer =
        facts.confirm?.result ?? (fired?.result === 'confirmed' ? 'confirmed' : undefined);
      if (answer === undefined) {
        const why = dropped
          ? `the SSH session dropped before the confirm (${dropped})`
          : 'the target did not run the confirm';
        log.warn(`not confirmed: ${why}; waiting for the target to roll back by itself`);
        finishRollback(await waitForRollback(guard), why);
      } else if (answer !== 'confirmed') {
        log.warn(`too late to confirm: the target is ${answer}`);
        const st = await waitForRollback(guard);
        finishRollback(st, `not confirmed within ${opts.confirmTimeoutSeconds} s`);
      } else {
        log.info(`confirmed over a new SSH session: ${now}`);
      }
    }
    // Health: only for a confirmed (or unguarded) activation.
    if (!result.error && activates) {
      const failedNow = facts.failed ?? [];
      const newly = failedNow.filter((u) => !before.failed.includes(u));
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
          detail: failedNow.length
            ? `none new (already failed before: ${failedNow.join(', ')})`
            : 'none',
          seconds: 0,
        });
      if (opts.healthCheck) {
        // its first try ran inside after.sh: commandCheck gets that answer, then tries on its own
        const tried = facts.check;
        const command = `${sudo}sh -c ${shellQuote(opts.healthCheck)}`;
        const checkSession = tried
          ? answeredOnce(session, command, async () => {
              if (
                (tried.code === 124 || tried.code === 137) &&
                tried.seconds >= Math.floor(checkTryMs / 1000) - 1
              )
                throw new RemoteTimeout(
                  `remote command timed out after ${checkTryMs / 1000}s: ${command.slice(0, 80)}`,
                  'check the target is responsive (load, memory) and re-run',
                );
              return { code: tried.code, stdout: tried.stdout, stderr: tried.stderr };
            })
          : session;
        result.checks.push(
          await commandCheck(
            checkSession,
            sudo,
            opts.healthCheck,
            opts.healthTimeoutSeconds * 1000,
          ),
        );
      }
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
                : opts.rollback
                  ? NO_SYSTEMD_RUN_KEEPS
                  : 'rollback is false: the host keeps the new system; fix it and deploy again',
          };
      }
    }
  }

  // 4. What changed, and what runs now: from what was read last; one more round trip only for
  // what is not known (after a rollback, or when after.sh never answered).
  if (!session)
    session = (await reconnectUntil(opts.reconnect, Date.now() + 60_000, pollMs)).session;
  if (session) {
    try {
      const systemPath = () =>
        (opts.action === 'boot'
          ? (profileNow ?? '')
          : opts.action === 'dry-activate'
            ? (opts.toplevel ?? '')
            : newSystem || (guard ? (lastStatus?.switchedTo ?? '') : '')) ||
        (opts.toplevel ?? '');
      const needStatus = activates && !newSystem && !!guard && !lastStatus;
      const needProfile = opts.action === 'boot' && profileNow === undefined;
      let closure = facts?.closure;
      if (hostRunsNow === undefined || needStatus || needProfile) {
        const of = needStatus || needProfile ? closureOf : systemPath();
        const f = await readAfter(session, sudo, {
          guardId: needStatus ? guard?.id : undefined,
          closure: of ? { of, prev: before.current, known } : undefined,
        });
        hostRunsNow = f.end.current;
        profileNow = f.end.profile;
        if (needStatus) lastStatus = f.guard;
        closure = f.closure ?? closure;
      }
      result.hostRuns = hostRunsNow;
      result.systemPath = systemPath();
      if (result.systemPath && closure?.of !== result.systemPath)
        closure = (
          await readAfter(session, sudo, {
            closure: { of: result.systemPath, prev: before.current, known },
          })
        ).closure;
      if (result.systemPath && closure) {
        if (closure.exit === 0) {
          const c = parseClosure(closure.output, opts.toplevelClosure);
          result.changed =
            result.systemPath !== (opts.action === 'boot' ? before.profile : before.current);
          const sent = bytesAdded(c, before.store);
          result.bytesSent = sent.bytes;
          result.pathsSent = sent.paths;
          if (before.current) result.diff = deployDiff(c);
          result.rebootNeeded = rebootReasons(c);
        } else {
          log.warn(
            `could not read the new closure on the target: ${closure.stderr.trim() || closure.output.trim()}`,
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
