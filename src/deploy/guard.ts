/** The runner's side of scripts/deploy/guard.sh: arm before the switch, confirm or roll back after. */
import { readAsset } from '../assets';
import { shellQuote } from '../shell';
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
  /** Seconds since the watcher saw the switch (undefined before). */
  sinceSwitch?: number;
  rollbackStatus?: number;
}

export interface Guard {
  id: string;
  prev: string;
  mode: 'switch' | 'test';
  timeoutSeconds: number;
}

function kv(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of stdout.split('\n')) {
    const eq = l.indexOf('=');
    if (eq > 0) m.set(l.slice(0, eq), l.slice(eq + 1).trim());
  }
  return m;
}

async function guardCommand(
  session: RemoteSession,
  sudo: string,
  args: string[],
): Promise<Map<string, string>> {
  const r = await session.exec(`${sudo}/bin/sh ${GUARD_PATH} ${args.map(shellQuote).join(' ')}`, {
    timeoutMs: 60_000,
  });
  const out = kv(r.stdout);
  if (r.code !== 0)
    throw new Error(
      `guard.sh ${args[0]} failed (exit ${r.code}): ${out.get('error') ?? r.stderr.trim()}`,
    );
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
  const at = Number(m.get('switched_at'));
  const now = Number(m.get('now'));
  const rs = m.get('rollback_status');
  return {
    current: m.get('current') ?? '',
    prev: m.get('prev') ?? '',
    result: (m.get('result') || 'armed') as GuardResult,
    by: (m.get('by') ?? '') as GuardStatus['by'],
    reason: m.get('reason') ?? '',
    sinceSwitch: at > 0 && now > 0 ? now - at : undefined,
    rollbackStatus: rs ? Number(rs) : undefined,
  };
}

/** Keeps the new system. Returns what the guard says: `confirmed`, or that the target is rolling back. */
export async function confirmGuard(session: RemoteSession, sudo: string, id: string) {
  return (await guardCommand(session, sudo, ['confirm', id])).get('result') as GuardResult;
}

export async function rollbackGuard(
  session: RemoteSession,
  sudo: string,
  id: string,
  reason: string,
) {
  return (await guardCommand(session, sudo, ['rollback', id, reason])).get('result') as GuardResult;
}

export async function disarmGuard(session: RemoteSession, sudo: string, id: string) {
  await guardCommand(session, sudo, ['disarm', id]);
}
