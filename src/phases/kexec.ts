/** Phase 1: upload the installer over the pinned session, kexec into it, and wait for it to answer. */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { VpsNixosError } from '../errors';
import type { KexecTarball } from '../nix/kexec';
import { formatBytes } from '../size';
import type { RemoteSession } from '../ssh/session';
import type { InstallerRootfs } from '../plan/plan';
import type { Phase } from './phase';
import { parseKv } from './prep';
import { waitForNewBoot, whoAnswers } from './wait';
import { runScript } from '../ssh/script';

export interface KexecContext {
  /** The current session; replaced by the phase after the reboot. */
  session: RemoteSession;
  /** A new session to the same target with the same pin (one attempt, short timeout). */
  reconnect(): Promise<RemoteSession>;
  tarball: KexecTarball;
  /** 'ramfs': `run` boots the installer with rootfstype=ramfs (its initrd is over the tmpfs cap). */
  rootfs?: InstallerRootfs;
  /** Disk-backed directory on the target for the tarball (never a tmpfs /tmp). */
  dir?: string;
  log: (line: string) => void;
  /** For tests: how long to wait in total and between attempts. */
  waitMs?: number;
  pollMs?: number;
  /** Bytes sent to the target, for the report. */
  bytesSent?: number;
  /** How long the old system may keep answering after `run` before we call the kexec failed. */
  oldSystemGraceMs?: number;
}

export const KEXEC_DIR = '/var/lib/vps-nixos/kexec';

/**
 * Disk the kexec phase needs at its peak: three copies of the installer (the tarball; its
 * unpacked kernel and initrd, about as big since the initrd is compressed already; and the copy
 * of the initrd that kexec/run appends the carried files to), plus 64 MiB for those files.
 */
export function kexecDiskNeed(tarballBytes: number): number {
  return tarballBytes * 3 + 64 * 2 ** 20;
}

type StageAction = 'check' | 'receive' | 'load';

/** Runs scripts/phases/kexec-stage.sh on the target; stdin carries the tarball to `receive`. */
async function stage(
  ctx: KexecContext,
  action: StageAction,
  opts: { stdin?: Readable; timeoutMs?: number } = {},
): Promise<Record<string, string>> {
  const dir = ctx.dir ?? KEXEC_DIR;
  const r = await runScript(ctx.session, 'phases/kexec-stage.sh', {
    args: [action, dir, ctx.tarball.sha256, ctx.rootfs ?? 'tmpfs'],
    stdin: opts.stdin,
    timeoutMs: opts.timeoutMs ?? 5 * 60_000,
  });
  const { values } = parseKv(r.stdout);
  if (r.code !== 0) {
    const why = values.error ?? r.stderr.trim();
    throw new VpsNixosError(
      `kexec ${action} failed on the target: ${why}`,
      action === 'receive'
        ? 'check free disk space on the target and re-run: the upload starts over (a partial one is never used)'
        : kexecFix(why, ctx),
    );
  }
  return values;
}

/** What to do about a failed `kexec --load`, from what it printed. Pure. */
export function kexecFix(output: string, ctx: Pick<KexecContext, 'tarball'>): string {
  const size = formatBytes(ctx.tarball.bytes);
  if (/\bKilled\b|Cannot allocate memory|out of memory/i.test(output))
    return `the kexec load ran out of memory: kexec_load holds the ${size} installer in the process and again in the kernel (kexec_file_load, the real run's choice on kernels >= 6.1, only once); free memory (stop services), or use a smaller installer or the infect method; nothing was wiped`;
  if (/Invalid argument/.test(output))
    return `the kernel refused the image: kexec images over half the RAM are refused (${size} installer); use a smaller installer or the infect method`;
  if (/Operation not permitted|lockdown/i.test(output))
    return 'kexec is not allowed here (Secure Boot lockdown, kexec_load_disabled=1, or a container): use the infect method';
  return 'check free disk space and that kexec is allowed (no Secure Boot lockdown, kexec_load_disabled=0)';
}

/** Waits for the host to come back as the installer; tells a kexec that did not take apart. */
async function waitForInstaller(
  ctx: KexecContext,
  oldBootId: string,
  loadedAt: number,
): Promise<{ bootId: string; seconds: number }> {
  const back = await waitForNewBoot(
    {
      reconnect: ctx.reconnect,
      waitMs: ctx.waitMs ?? 10 * 60_000,
      pollMs: ctx.pollMs ?? 3000,
      what: 'after kexec, the host',
      keyMismatchFix:
        "nothing was wiped; reboot the VPS from the provider panel to get the old system back, and check the installer's run script carries /etc/ssh/ssh_host_*",
      oldSystemGraceMs: ctx.oldSystemGraceMs ?? 90_000,
      onOldSystem: (seconds) =>
        new VpsNixosError(
          `kexec did not take: ${seconds} s after loading the installer the old system still answers with boot_id ${oldBootId}`,
          'look at the provider console or dmesg: Secure Boot lockdown, Xen ("Could not get memory layout") and some ARM hosts cannot kexec; the infect method works without kexec',
        ),
      onTimeoutFix:
        'look at the provider console: the installer may have failed to boot (too little RAM for the initrd?) or the network was not carried; rebooting from the panel brings the old system back',
    },
    oldBootId,
    loadedAt,
    (who) => {
      if (who.variantId === 'installer' && who.isNixos) return true;
      throw new VpsNixosError(
        `the host rebooted (boot_id ${who.bootId}) into a system that is not the installer (VARIANT_ID=${who.variantId || 'none'}): the installer did not boot and the machine reset`,
        `nothing was wiped; look at the provider console: an initrd is unpacked in RAM next to itself, so this ${formatBytes(ctx.tarball.bytes)} installer needs about twice that free ("Initramfs unpacking failed"); use a smaller installer or the infect method`,
      );
    },
  );
  ctx.session = back.session;
  return { bootId: back.who.bootId, seconds: back.seconds };
}

/**
 * Puts the installer on the target and loads it: checks the room, uploads the tarball unless the
 * verified one is there already (hashed on the target while it streams in, so nothing reads it
 * twice), unpacks it and runs kexec/run. Returns before the kexec happens (moments later).
 */
export async function stageInstaller(ctx: KexecContext): Promise<{
  sent: number;
  uploadSeconds: number;
  /** The cipher the upload went over (see cipherPreference in ssh/session). */
  cipher?: string;
  oldBootId: string;
  loadedAt: number;
}> {
  const dir = ctx.dir ?? KEXEC_DIR;
  const check = await stage(ctx, 'check');
  if (check.fstype === 'tmpfs' || check.fstype === 'ramfs') {
    throw new VpsNixosError(
      `${dir} is on ${check.fstype}: the installer must be unpacked on disk`,
      'free disk space on the root file system',
    );
  }
  const need = kexecDiskNeed(ctx.tarball.bytes);
  if (Number(check.avail_bytes) < need) {
    throw new VpsNixosError(
      `${dir} has ${formatBytes(Number(check.avail_bytes))} free, the installer needs ${formatBytes(need)} (the tarball, its unpacked kernel and initrd, the initrd copy that carries the keys, and the carried files)`,
      'free disk space on the target (a swapfile of ours is /var/lib/vps-nixos/swapfile: swap-size 0 leaves it out)',
    );
  }
  let sent = 0;
  const uploadStart = Date.now();
  if (check.uploaded === 'yes') {
    ctx.log(
      `the installer is already on the target (sha256 ${ctx.tarball.sha256}): not uploading again`,
    );
  } else {
    ctx.log(`uploading ${formatBytes(ctx.tarball.bytes)} to ${dir}`);
    await stage(ctx, 'receive', {
      stdin: createReadStream(ctx.tarball.path),
      timeoutMs: 15 * 60_000,
    });
    sent = ctx.tarball.bytes;
    ctx.bytesSent = (ctx.bytesSent ?? 0) + sent;
  }
  const uploadSeconds = (Date.now() - uploadStart) / 1000;
  const loaded = await stage(ctx, 'load');
  return {
    sent,
    uploadSeconds,
    cipher: ctx.session.cipher,
    oldBootId: loaded.boot_id ?? '',
    loadedAt: Date.now(),
  };
}

export const kexecPhase: Phase<KexecContext> = {
  name: 'kexec',
  timeoutMs: 20 * 60_000,
  onTimeout:
    "the upload or the reboot into the installer is stuck: check the target's console and network",
  async detect(ctx) {
    const who = await whoAnswers(ctx.session);
    return {
      done: who.isNixos && who.variantId === 'installer',
      evidence:
        who.isNixos && who.variantId === 'installer'
          ? `the installer answers (VARIANT_ID=installer, boot_id ${who.bootId})`
          : `the host runs its own system (boot_id ${who.bootId})`,
    };
  },
  async run(ctx) {
    const { sent, uploadSeconds, cipher, oldBootId, loadedAt } = await stageInstaller(ctx);
    ctx.log(`installer loaded (old boot_id ${oldBootId}); waiting for it to answer`);
    ctx.session.close();
    const back = await waitForInstaller(ctx, oldBootId, loadedAt);
    const rate = sent
      ? ` (${(sent / 2 ** 20 / Math.max(uploadSeconds, 0.001)).toFixed(1)} MiB/s over ${cipher ?? 'ssh'})`
      : '';
    return `sent ${formatBytes(sent)} in ${uploadSeconds.toFixed(1)} s${rate}; the installer answered ${back.seconds.toFixed(1)} s after loading (boot_id ${back.bootId}, same pinned host key)`;
  },
};
