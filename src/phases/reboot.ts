/** Phase 4: reboot into the installed system and check it is the one we installed. */
import { VpsNixosError } from '../errors';
import { runScript } from '../ssh/script';
import type { RemoteSession } from '../ssh/session';
import type { Phase } from './phase';
import { waitForNewBoot, whoAnswers, type WhoAnswers } from './wait';

export interface RebootContext {
  session: RemoteSession;
  reconnect(): Promise<RemoteSession>;
  toplevel: string;
  waitMs?: number;
  pollMs?: number;
}

export const rebootPhase: Phase<RebootContext> = {
  name: 'reboot',
  timeoutMs: 20 * 60_000,
  onTimeout: "the installed system does not come up: look at the provider's console",
  async detect(ctx) {
    const who = await whoAnswers(ctx.session);
    const done = who.isNixos && who.variantId !== 'installer' && who.currentSystem === ctx.toplevel;
    return {
      done,
      evidence: done
        ? `the installed system answers (/run/current-system = ${who.currentSystem}, boot_id ${who.bootId})`
        : `${who.variantId === 'installer' ? 'the installer' : 'another system'} answers (boot_id ${who.bootId})`,
    };
  },
  async run(ctx) {
    const back = await rebootAndWait(ctx, {
      what: 'the installed system',
      keyMismatchFix:
        'the host keys were not copied into /mnt/etc/ssh; log in on the console and check /etc/ssh',
      onTimeoutFix:
        "look at the provider console: the boot loader or the installed system's network may be wrong (see host-config)",
      judge: (who) => {
        if (who.variantId === 'installer')
          throw new VpsNixosError(
            'the host rebooted into the installer again, not the installed system',
            "the provider boots from its own media: set the VPS to boot from disk in the provider's panel",
          );
        // The system is activated at boot, maybe after sshd is up: wait for it within the deadline.
        if (!who.isNixos || who.currentSystem === '') return false;
        if (who.currentSystem !== ctx.toplevel)
          throw new VpsNixosError(
            `the host booted ${who.currentSystem}, not the installed ${ctx.toplevel}`,
            'the boot loader did not pick the new system: check boot.loader in the configuration',
          );
        return true;
      },
    });
    return `rebooted in ${back.seconds.toFixed(1)} s into ${back.who.currentSystem} (boot_id ${back.who.bootId}, /etc/NIXOS, same pinned host key)`;
  },
};

export interface RebootSpec {
  /** What should come up, for messages. */
  what: string;
  keyMismatchFix: string;
  onTimeoutFix: string;
  /** true: it is up; false: not yet; throws: it never will be. */
  judge: (who: WhoAnswers) => boolean;
}

/**
 * Reboots detached (the reboot must not depend on the session it ends), then waits for a new
 * boot_id behind the same pinned key that `spec.judge` accepts. Replaces ctx.session.
 */
export async function rebootAndWait(
  ctx: Pick<RebootContext, 'session' | 'reconnect' | 'waitMs' | 'pollMs'>,
  spec: RebootSpec,
): Promise<{ who: WhoAnswers; seconds: number }> {
  const before = await whoAnswers(ctx.session);
  await runScript(ctx.session, 'reboot.sh', { timeoutMs: 60_000 });
  const since = Date.now();
  ctx.session.close();
  const back = await waitForNewBoot(
    {
      reconnect: ctx.reconnect,
      waitMs: ctx.waitMs ?? 15 * 60_000,
      pollMs: ctx.pollMs ?? 3000,
      what: spec.what,
      keyMismatchFix: spec.keyMismatchFix,
      oldSystemGraceMs: 5 * 60_000,
      onOldSystem: (s) =>
        new VpsNixosError(
          `${s} s after the reboot command the host still answers with boot_id ${before.bootId}`,
          'the reboot did not happen: reboot the VPS from the provider panel',
        ),
      onTimeoutFix: spec.onTimeoutFix,
    },
    before.bootId,
    since,
    spec.judge,
  );
  ctx.session = back.session;
  return { who: back.who, seconds: back.seconds };
}
