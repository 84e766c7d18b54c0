/** Phase 3: partition + install, in the kexec installer. The one phase that wipes a disk. */
import { VpsNixosError } from '../errors';
import { sendClosure } from '../nix/transfer';
import { formatBytes } from '../size';
import type { RemoteSession } from '../ssh/session';
import { lineStream, type Phase } from './phase';
import { parseKv } from './prep';
import { runScript } from '../ssh/script';

export interface InstallContext {
  session: RemoteSession;
  toplevel: string;
  /** The closure's own Nix (a store path): it registers the closure and sets the profile in /mnt. */
  nix: string;
  diskScript: string;
  /** The disk confirm-wipe named, checked against the facts before any phase ran. */
  disk: string;
  /** What the probe of the old system saw, when this run probed it (not on a resumed run). */
  expect: { machineId?: string; diskBytes?: number };
  log: (line: string) => void;
  bytesSent?: number;
  /** Extra binary caches for the target (input substituters / trusted-public-keys). */
  substituters?: { urls: string[]; publicKeys: string[] };
}

async function step(
  ctx: InstallContext,
  args: string[],
  timeoutMs: number,
  stream = false,
): Promise<Record<string, string>> {
  const r = await runScript(ctx.session, 'phases/install.sh', {
    args,
    timeoutMs,
    onOutput: stream ? lineStream(ctx.log) : undefined,
  });
  const { values } = parseKv(r.stdout);
  if (r.code !== 0)
    throw new VpsNixosError(
      `install step '${args[0]}' failed on the target: ${values.error ?? r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
      args[0] === 'disko'
        ? "look at the disk script's output above; the old system is gone from the disk, re-run to partition again"
        : 're-run to resume; the output above says what failed',
    );
  return values;
}

/** The installer is the machine we probed, and the disk is the one named; else nothing is touched. */
async function checkIdentity(ctx: InstallContext, diskoDone: boolean): Promise<string> {
  const id = await step(ctx, ['identity', ctx.disk], 60_000);
  const fix = 'nothing was wiped; check target, known-hosts and confirm-wipe';
  if (ctx.expect.machineId && id.machine_id !== ctx.expect.machineId)
    throw new VpsNixosError(
      `the installer carries machine-id ${id.machine_id || 'none'}, the probed system had ${ctx.expect.machineId}: this is not the machine that was probed`,
      fix,
    );
  if (id.disk_type !== 'disk')
    throw new VpsNixosError(
      `${ctx.disk} is ${id.disk_type === 'missing' ? 'not there' : `a ${id.disk_type}, not a disk`} in the installer`,
      fix,
    );
  if (ctx.expect.diskBytes && Number(id.disk_bytes) !== ctx.expect.diskBytes)
    throw new VpsNixosError(
      `${ctx.disk} has ${formatBytes(Number(id.disk_bytes))} in the installer, the probe saw ${formatBytes(ctx.expect.diskBytes)}: not the same disk`,
      fix,
    );
  if (!diskoDone && Number(id.disk_mounted) > 0)
    throw new VpsNixosError(`${ctx.disk} is mounted in the installer`, fix);
  return `machine-id ${id.machine_id} (${ctx.expect.machineId ? 'matches the probe' : `carried, from ${id.machine_id_from}`}), ${ctx.disk} ${formatBytes(Number(id.disk_bytes))}, pinned host key`;
}

export const installPhase: Phase<InstallContext> = {
  name: 'install',
  timeoutMs: 3 * 60 * 60_000,
  onTimeout:
    "the closure copy or the boot loader install is stuck: check the target's free disk (df -h /mnt) and memory (free -m)",
  async detect(ctx) {
    const s = await step(ctx, ['state', ctx.toplevel], 60_000);
    return {
      done: s.installed === 'yes',
      evidence:
        s.installed === 'yes'
          ? `/mnt's system profile is ${s.profile} and the host keys are in /mnt/etc/ssh`
          : `disko ${s.disko === 'none' ? 'not run' : 'done'}, /mnt ${s.mnt}, profile ${s.profile}, host keys ${s.host_keys}`,
    };
  },
  async run(ctx) {
    const state = await step(ctx, ['state', ctx.toplevel], 60_000);
    const diskoDone = state.disko === `${ctx.disk} ${ctx.diskScript}` && state.mnt === 'mounted';
    const identity = await checkIdentity(ctx, diskoDone);
    ctx.log(`identity: ${identity}`);
    let parts: string;
    if (diskoDone) {
      parts = `${ctx.disk} already partitioned by this installer (resumed)`;
      ctx.log(parts);
    } else {
      ctx.log(`wiping and partitioning ${ctx.disk} (confirm-wipe) with ${ctx.diskScript}`);
      const d = await step(ctx, ['disko', ctx.disk, ctx.diskScript], 30 * 60_000, true);
      parts = `partitioned ${ctx.disk}, /mnt on ${d.mnt} (${formatBytes(Number(d.mnt_avail_bytes))} free)`;
    }
    // Straight into /mnt's store: every store write lands on the new disk, none in the tmpfs.
    const sent = await sendClosure(ctx.session, [ctx.toplevel], {
      storeRoot: '/mnt',
      nix: ctx.nix,
      substitute: true,
      substituters: ctx.substituters,
      log: ctx.log,
    });
    ctx.bytesSent = (ctx.bytesSent ?? 0) + sent.bytesSent;
    const fin = await step(ctx, ['finish', ctx.toplevel, ctx.nix], 60 * 60_000, true);
    const wire = sent.tarBytes
      ? `${formatBytes(sent.bytesSent)} zstd of ${formatBytes(sent.tarBytes)}`
      : formatBytes(sent.bytesSent);
    return `${parts}; closure ${sent.closure.length} paths: ${sent.present} there, ${sent.substituted} substituted by the target (${sent.substituteSeconds.toFixed(1)} s), ${sent.sent} sent (${wire}), NAR hashes checked (${sent.verifySeconds.toFixed(1)} s) and registered by the closure's Nix; boot loader installed; system profile ${fin.profile}; host keys copied`;
  },
};
