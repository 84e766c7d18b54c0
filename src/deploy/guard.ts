/** The runner's side of scripts/deploy/guard.sh: arm before the switch, confirm or roll back after. */
import { readAsset } from '../assets';
import { shellQuote } from '../shell';
import { parseKv } from '../phases/prep';
import type { RemoteSession } from '../ssh/session';

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

async function guardCommand(
  session: RemoteSession,
  sudo: string,
  args: string[],
): Promise<Record<string, string>> {
  const r = await session.exec(`${sudo}/bin/sh ${GUARD_PATH} ${args.map(shellQuote).join(' ')}`, {
    timeoutMs: 60_000,
  });
  const out = parseKv(r.stdout).values;
  if (r.code !== 0)
    throw new Error(`guard.sh ${args[0]} failed (exit ${r.code}): ${out.error ?? r.stderr.trim()}`);
  return out;
}

/** Uploads the guard and starts its watcher; the previous system must have a switch-to-configuration. */
export async function armGuard(
  session: RemoteSession,
  sudo: string,
  g: Guard & { profileLink: string },
): Promise<void> {
  const script = readAsset('scripts/deploy/guard.sh');
  const up = await session.exec(
    `${sudo}sh -c 'umask 077; mkdir -p /run/vps-nixos && cat > ${GUARD_PATH}.tmp && mv ${GUARD_PATH}.tmp ${GUARD_PATH}'`,
    { stdin: script, timeoutMs: 60_000 },
  );
  if (up.code !== 0) throw new Error(`could not upload the rollback guard: ${up.stderr.trim()}`);
  await guardCommand(session, sudo, [
    'arm',
    g.id,
    g.prev,
    g.profileLink || '-',
    String(g.timeoutSeconds),
    g.mode,
  ]);
}

export async function guardStatus(
  session: RemoteSession,
  sudo: string,
  id: string,
): Promise<GuardStatus> {
  const m = await guardCommand(session, sudo, ['status', id]);
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

/** Keeps the new system. Returns what the guard says: `confirmed`, or that the target is rolling back. */
export async function confirmGuard(session: RemoteSession, sudo: string, id: string) {
  return (await guardCommand(session, sudo, ['confirm', id])).result as GuardResult;
}

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
