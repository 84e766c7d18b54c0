/**
 * The runner's side of scripts/deploy/guard.sh. It is installed and armed by state.sh before the
 * switch and read, disarmed or confirmed by after.sh over the new session (one round trip each,
 * deploy.ts); the verbs here are the single commands around those: roll back, poll, and the
 * rare fallbacks.
 */
import { parseKv } from '../phases/prep';
import { shellQuote } from '../shell';
import type { ExecResult, RemoteSession } from '../ssh/session';

export const GUARD_PATH = '/run/vps-nixos/guard.sh';

export type GuardResult =
  'armed' | 'confirmed' | 'rolling-back' | 'rolled-back' | 'rollback-failed' | 'disarmed';

export interface GuardStatus {
  current: string;
  prev: string;
  result: GuardResult;
  by: 'runner' | 'target' | '';
  reason: string;
  /** The system the watcher saw the switch go to ('' before it did). */
  switchedTo: string;
  rollbackStatus?: number;
}

export interface Guard {
  id: string;
  prev: string;
  mode: 'switch' | 'test';
  timeoutSeconds: number;
}

/**
 * The target answered, and a script there failed (a guard.sh verb's non-zero exit, …): unlike a
 * dropped connection, asking again over a new session would not change the answer.
 */
export class TargetScriptError extends Error {}

/**
 * The session dropped while a command ran: the channel closed without an exit status (ssh2 then
 * answers exit -1). Whether the command ran on the target is unknown.
 */
export class SessionDropped extends Error {}

/** Throws SessionDropped for an answer without an exit status. */
export function answered(r: ExecResult, what: string): ExecResult {
  if (r.code === -1)
    throw new SessionDropped(
      `no exit status from ${what}${r.signal ? ` (signal ${r.signal})` : ''}: the SSH session dropped`,
    );
  return r;
}

/** The error a guard.sh verb that exited non-zero is reported with. */
export function guardFailure(
  verb: string,
  code: number,
  error: string | undefined,
  stderr: string,
) {
  return new TargetScriptError(`guard.sh ${verb} failed (exit ${code}): ${error ?? stderr.trim()}`);
}

/** guard.sh status's key=value lines, typed. */
export function statusFrom(m: Record<string, string>): GuardStatus {
  return {
    current: m.current ?? '',
    prev: m.prev ?? '',
    result: (m.result || 'armed') as GuardResult,
    by: (m.by ?? '') as GuardStatus['by'],
    reason: m.reason ?? '',
    switchedTo: m.switched_to ?? '',
    rollbackStatus: m.rollback_status ? Number(m.rollback_status) : undefined,
  };
}

async function guardCommand(
  session: RemoteSession,
  sudo: string,
  args: string[],
): Promise<Record<string, string>> {
  const r = answered(
    await session.exec(`${sudo}/bin/sh ${GUARD_PATH} ${args.map(shellQuote).join(' ')}`, {
      timeoutMs: 60_000,
    }),
    `guard.sh ${args[0]}`,
  );
  const out = parseKv(r.stdout).values;
  if (r.code !== 0) throw guardFailure(args[0] as string, r.code, out.error, r.stderr);
  return out;
}

export async function guardStatus(
  session: RemoteSession,
  sudo: string,
  id: string,
): Promise<GuardStatus> {
  return statusFrom(await guardCommand(session, sudo, ['status', id]));
}

/** Keeps the new system. Returns what the guard says: `confirmed`, or that the target is rolling back. */
export async function confirmGuard(session: RemoteSession, sudo: string, id: string) {
  return (await guardCommand(session, sudo, ['confirm', id])).result as GuardResult;
}

/** Rolls back now. Asking again is harmless: a guard already rolling back says so. */
export async function rollbackGuard(
  session: RemoteSession,
  sudo: string,
  id: string,
  reason: string,
) {
  return (await guardCommand(session, sudo, ['rollback', id, reason])).result as GuardResult;
}

export async function disarmGuard(session: RemoteSession, sudo: string, id: string) {
  await guardCommand(session, sudo, ['disarm', id]);
}
