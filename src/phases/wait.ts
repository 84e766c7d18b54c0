/** Waiting for a host to come back after a kexec or reboot: new boot_id, same pinned key, bounded. */
import { HostKeyMismatch, VpsNixosError } from '../errors';
import { runScript } from '../ssh/script';
import type { RemoteSession } from '../ssh/session';

/** What answers now: boot id, os-release variant, NixOS or not, the running system. One round trip. */
export interface WhoAnswers {
  bootId: string;
  variantId: string;
  isNixos: boolean;
  /** `readlink -f /run/current-system`, '' when there is none. */
  currentSystem: string;
}

export async function whoAnswers(session: RemoteSession): Promise<WhoAnswers> {
  const r = await runScript(session, 'who.sh', { timeoutMs: 30_000 });
  const [bootId = '', variantId = '', nixos = '', current = ''] = r.stdout
    .split('\n')
    .map((l) => l.trim());
  // A system shutting down (the kexec or reboot under way) may still accept a session and then
  // die under the script: no boot_id is no answer, never "a system that is not ours".
  if (!/^[0-9a-f-]{36}$/.test(bootId))
    throw new Error(
      `who.sh gave no boot_id (exit ${r.code}${r.stderr ? `: ${r.stderr.trim().slice(0, 200)}` : ''})`,
    );
  return { bootId, variantId, isNixos: nixos === 'nixos', currentSystem: current };
}

export interface WaitOptions {
  /** A new session to the same target with the same pin (one attempt, short timeout). */
  reconnect(): Promise<RemoteSession>;
  /** In total, from `since`. */
  waitMs: number;
  pollMs: number;
  /** What we are waiting for, for messages ("the installer", "the installed system"). */
  what: string;
  /** Says why a different host key is fatal here (what was not carried). */
  keyMismatchFix: string;
  /** After this long with the old boot_id still answering and never gone, the reboot did not happen. */
  oldSystemGraceMs: number;
  onOldSystem: (seconds: number) => VpsNixosError;
  onTimeoutFix: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls until a session answers with a boot_id other than `oldBootId`, then lets `judge` decide:
 * true (it is ours: return the session), false (not ready yet: keep polling), or throw.
 * Never waits past the deadline.
 */
export async function waitForNewBoot(
  opts: WaitOptions,
  oldBootId: string,
  since: number,
  judge: (who: WhoAnswers) => boolean,
): Promise<{ session: RemoteSession; who: WhoAnswers; seconds: number }> {
  const deadline = since + opts.waitMs;
  let wentAway = false;
  let lastSeen = 'nothing yet';
  while (Date.now() < deadline) {
    await sleep(opts.pollMs);
    let s: RemoteSession;
    try {
      s = await opts.reconnect();
    } catch (err) {
      if (err instanceof HostKeyMismatch) {
        throw new VpsNixosError(
          `${opts.what} answers with another host key (${err.presented}): the pinned keys were not carried`,
          opts.keyMismatchFix,
        );
      }
      wentAway = true;
      lastSeen = `unreachable (${(err as Error).message.split(':')[0]})`;
      continue;
    }
    // A session to a system going down (the kexec or reboot under way) may open and then lose
    // its exec (ssh2's "No response from server"), time out or give no boot_id: all no answer.
    let who: WhoAnswers;
    try {
      who = await whoAnswers(s);
    } catch (err) {
      s.close();
      lastSeen = `a dropped session (${(err as Error).message})`;
      continue;
    }
    if (who.bootId === oldBootId) {
      lastSeen = 'the old system (same boot_id)';
      s.close();
      if (Date.now() - since > opts.oldSystemGraceMs && !wentAway)
        throw opts.onOldSystem(Math.round((Date.now() - since) / 1000));
      continue;
    }
    let ours: boolean;
    try {
      ours = judge(who);
    } catch (err) {
      s.close();
      throw err;
    }
    if (!ours) {
      lastSeen = `boot_id ${who.bootId}, not ready (current system '${who.currentSystem}')`;
      s.close();
      continue;
    }
    return { session: s, who, seconds: (Date.now() - since) / 1000 };
  }
  throw new VpsNixosError(
    `${opts.what} did not answer within ${Math.round(opts.waitMs / 1000)} s (last seen: ${lastSeen})`,
    opts.onTimeoutFix,
  );
}
