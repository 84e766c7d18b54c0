/**
 * The bootstrap: the planned phases, in order, on one shared context whose session each phase may
 * replace (kexec and reboot end the old one). Checks everything that can be checked before the
 * first phase touches the host: the artifacts exist here, confirm-wipe names the right disk.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { findSystemNix } from '../nix/system-nix';
import { join } from 'node:path';
import { VpsNixosError } from '../errors';
import { formatBytes } from '../size';
import type { KexecTarball } from '../nix/kexec';
import type { PreparedInfect } from '../infect/script';
import { localClosure } from '../nix/transfer';
import type { InstallerRootfs, Plan, PhaseName } from '../plan/plan';
import type { Facts } from '../probe/facts';
import type { RemoteSession } from '../ssh/session';
import { installerPrepPhase, shouldPatchUdevadm } from './installer-prep';
import { installPhase } from './install';
import { kexecDiskNeed, kexecPhase } from './kexec';
import {
  runPhases,
  type Phase,
  type PhaseLogger,
  type PhaseMeter,
  type PhaseRecord,
} from './phase';
import { infectPhase, infectRebootPhase } from './infect';
import { INFECT_TOOLS, KEXEC_TOOLS, prepPhase } from './prep';
import { rebootPhase } from './reboot';
import { whoAnswers } from './wait';
import { checkWipe } from './wipe-guard';

export interface BootstrapArtifacts {
  kexec?: KexecTarball;
  /** 'ramfs': the installer's initrd is over the tmpfs cap on this host (checkInstall). */
  kexecRootfs?: InstallerRootfs;
  toplevel?: string;
  diskScript?: string;
  /** The verified, patched nixos-infect (method infect). */
  infect?: PreparedInfect;
}

export interface BootstrapOptions {
  confirmWipe?: string;
  patchUdevadm: 'auto' | 'true' | 'false';
  substituters?: { urls: string[]; publicKeys: string[] };
  /** The login keys' public halves and the login user: checked after the infect reboot. */
  deployPublicKeys?: readonly string[];
  user?: string;
  reconnect(): Promise<RemoteSession>;
  log: PhaseLogger;
  /** For tests: sampling interval of the target's memory (default 2 s; 0 turns it off). */
  memorySampleMs?: number;
}

export interface BootstrapResult {
  phases: PhaseRecord[];
  host: { isNixos: boolean; currentSystem: string | null; bootId: string; variantId: string };
  bytesSent: number;
  warnings: string[];
  /** The nixos-infect that ran (method infect): source, verified hash, patches; not its text. */
  infect?: Omit<PreparedInfect, 'text'>;
  /** The session now open to the host (the one the caller passed may be closed). */
  session: RemoteSession;
  error?: unknown;
}

const BOOTSTRAP_PHASES: PhaseName[] = [
  'prep',
  'kexec',
  'installer-prep',
  'install',
  'infect',
  'reboot',
];

/** The text of the disk script's own files (not its tools), to see which disk it formats. */
export async function diskScriptText(diskScript: string): Promise<string> {
  const paths = (await localClosure([diskScript])).filter((p) =>
    /-(disko[^/]*|disk-deactivate)$/.test(p),
  );
  let text = '';
  const read = (p: string, depth: number) => {
    const st = statSync(p);
    if (st.isDirectory() && depth < 4) for (const e of readdirSync(p)) read(join(p, e), depth + 1);
    else if (st.isFile() && st.size < 4 * 2 ** 20) text += readFileSync(p, 'utf8') + '\n';
  };
  for (const p of paths) read(p, 0);
  return text;
}

/** Samples MemTotal − MemAvailable on whatever session is current; keeps the peak per phase. */
function memoryMeter(ctx: { session: RemoteSession; bytesSent?: number }, everyMs: number) {
  let peak = 0;
  let sentAtStart = 0;
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      const r = await ctx.session.exec('cat /proc/meminfo', { timeoutMs: 10_000 });
      const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(r.stdout)?.[1]);
      const used = (kb('MemTotal') - kb('MemAvailable')) * 1024;
      if (Number.isFinite(used)) peak = Math.max(peak, used);
    } catch {
      // the host is rebooting: no sample
    } finally {
      busy = false;
    }
  };
  const meter: PhaseMeter & { stop(): void } = {
    begin() {
      peak = 0;
      sentAtStart = ctx.bytesSent ?? 0;
      if (everyMs > 0) {
        void sample();
        timer = setInterval(() => void sample(), everyMs);
      }
    },
    end() {
      if (timer) clearInterval(timer);
      timer = undefined;
      return {
        peakMemBytes: peak || undefined,
        bytesSent: (ctx.bytesSent ?? 0) - sentAtStart,
      };
    },
    stop() {
      if (timer) clearInterval(timer);
    },
  };
  return meter;
}

/**
 * The swapfile prep makes, so that the kexec installer still fits on the root file system after
 * it (a 4 GiB disk with 1 GiB free cannot hold both). Below 64 MiB it is not worth making.
 */
export function swapfileFor(
  plan: Pick<Plan, 'swapfileBytes'>,
  facts: Pick<Facts, 'root'>,
  phases: PhaseName[],
  artifacts: BootstrapArtifacts,
): number {
  const want = plan.swapfileBytes ?? 0;
  if (!phases.includes('prep') || !phases.includes('kexec') || !artifacts.kexec || !facts.root)
    return want;
  const room = facts.root.availBytes - kexecDiskNeed(artifacts.kexec.bytes) - 256 * 2 ** 20;
  const fits = Math.max(0, Math.floor(room / 2 ** 20) * 2 ** 20);
  const size = Math.min(want, fits);
  return size < 64 * 2 ** 20 ? 0 : size;
}

/** Everything before the first phase: throws (nothing touched) when the run cannot go through. */
export async function bootstrapPreflight(
  phases: PhaseName[],
  facts: Facts,
  artifacts: BootstrapArtifacts,
  confirmWipe: string | undefined,
  method: Plan['method'] = 'kexec',
): Promise<{ warnings: string[]; diskBytes?: number; nix?: string }> {
  const warnings: string[] = [];
  const need = (what: string, ok: unknown, fix: string) => {
    if (!ok) throw new VpsNixosError(`the bootstrap needs ${what}; nothing was changed`, fix);
  };
  if (phases.includes('kexec')) {
    need(
      'the kexec installer tarball',
      artifacts.kexec,
      'give kexec-tarball, or a flake to build ours',
    );
    // The kernel refuses kexec images (kernel + initrd, about the tarball's size: both are
    // compressed already) larger than half the RAM: kexec_load says EINVAL, nothing more.
    const half = facts.memTotalBytes / 2;
    if (artifacts.kexec!.bytes > half)
      throw new VpsNixosError(
        `the kexec installer (${formatBytes(artifacts.kexec!.bytes)}) is larger than half of this host's RAM (MemTotal ${formatBytes(facts.memTotalBytes)}): the kernel refuses to load kexec images over ${formatBytes(half)}; nothing was changed`,
        'use a smaller installer (ours without firmware; installer-budget), more RAM, or the infect method (method: infect)',
      );
    // Loading holds the image twice in kernel memory (read buffer + segments), which cannot
    // be swapped: measured, a 286 MiB installer was OOM-killed at MemTotal 708 MiB, both syscalls.
    // The kexec phase unpacks the installer on the root file system: a full disk is refused
    // now, not after prep has tried to install tools on it (apt hangs on a full disk). A copy
    // uploaded by an earlier run already counts in what is used.
    const disk = kexecDiskNeed(artifacts.kexec!.bytes);
    if (facts.root && facts.root.availBytes + artifacts.kexec!.bytes < disk)
      throw new VpsNixosError(
        `the root file system (${facts.root.mountpoint}) has ${formatBytes(facts.root.availBytes)} free; the kexec phase needs ${formatBytes(disk)} there (the installer, its unpacked kernel and initrd, the copy that carries the keys); nothing was changed`,
        'free disk space on the target and re-run',
      );
    if (artifacts.kexec!.bytes * 2 > facts.memTotalBytes * 0.75)
      warnings.push(
        `loading the kexec installer (${formatBytes(artifacts.kexec!.bytes)}) holds it twice in kernel memory, ${formatBytes(artifacts.kexec!.bytes * 2)} of MemTotal ${formatBytes(facts.memTotalBytes)}: the load may be OOM-killed (nothing is wiped then); a smaller installer or the infect method avoids it`,
      );
  }
  let diskBytes: number | undefined;
  let nix: string | undefined;
  if (phases.includes('install')) {
    need('the system toplevel', artifacts.toplevel, 'give toplevel, or a flake to build it');
    need(
      'the disk script',
      artifacts.diskScript,
      'give disk-script, or a flake with disko to build it',
    );
    // Both must be in this runner's store: they are sent from it.
    await localClosure([artifacts.toplevel!, artifacts.diskScript!]);
    const wipe = checkWipe(confirmWipe, facts.disks, await diskScriptText(artifacts.diskScript!));
    if (wipe.warning) warnings.push(wipe.warning);
    diskBytes = wipe.disk.sizeBytes;
    // The installer has no Nix: the closure registers itself with its own.
    const found = findSystemNix(artifacts.toplevel!);
    if (found && 'refusal' in found)
      throw new VpsNixosError(
        `${found.refusal.reason}; nothing was changed`,
        found.refusal.remediation,
      );
    nix = found?.nixStorePath;
    need(
      "the system closure in this runner's store",
      nix,
      "build the system here, or give a toplevel that is in this runner's Nix store",
    );
  }
  if (phases.includes('infect'))
    need(
      'the verified nixos-infect script',
      artifacts.infect,
      'give infect-url and infect-sha256, or keep the default infect-revision',
    );
  if (phases.includes('reboot') && method !== 'infect')
    need('the system toplevel', artifacts.toplevel, 'give toplevel, or a flake to build it');
  return { warnings, diskBytes, nix };
}

function withoutText({ text: _text, ...rest }: PreparedInfect): Omit<PreparedInfect, 'text'> {
  return rest;
}

/** Runs the plan's bootstrap phases. Never throws after the first phase began: see `error`. */
export async function runBootstrap(
  session: RemoteSession,
  facts: Facts,
  plan: Plan,
  artifacts: BootstrapArtifacts,
  opts: BootstrapOptions,
): Promise<BootstrapResult> {
  const names = plan.phases.filter((p) => BOOTSTRAP_PHASES.includes(p));
  const pre = await bootstrapPreflight(names, facts, artifacts, opts.confirmWipe, plan.method);
  for (const w of pre.warnings) opts.log.warn(w);
  const line = (l: string) => opts.log.info(l);
  const prepPlan = { ...plan, swapfileBytes: swapfileFor(plan, facts, names, artifacts) };
  if (prepPlan.swapfileBytes !== plan.swapfileBytes)
    opts.log.warn(
      `swapfile ${formatBytes(prepPlan.swapfileBytes ?? 0)} instead of ${formatBytes(plan.swapfileBytes ?? 0)}: the root file system must keep room for the kexec installer`,
    );
  // One context for all phases; each reads the fields it needs.
  const ctx = {
    session,
    reconnect: opts.reconnect,
    log: line,
    plan: prepPlan,
    isContainer: facts.isContainer,
    tools: plan.method === 'infect' ? INFECT_TOOLS : KEXEC_TOOLS,
    infect: artifacts.infect,
    deployPublicKeys: opts.deployPublicKeys,
    user: opts.user,
    tarball: artifacts.kexec!,
    rootfs: artifacts.kexecRootfs,
    zramBytes: plan.zramBytes ?? 0,
    diskScript: artifacts.diskScript,
    patchUdevadm: shouldPatchUdevadm(opts.patchUdevadm, facts.virtualization),
    toplevel: artifacts.toplevel ?? '',
    nix: pre.nix ?? '',
    disk: opts.confirmWipe ?? '',
    expect: {
      machineId: facts.isInstaller ? undefined : facts.machineId,
      diskBytes: pre.diskBytes,
    },
    bytesSent: 0,
    substituters: opts.substituters,
  };
  const table: Record<string, Phase<typeof ctx>> = {
    prep: prepPhase,
    kexec: kexecPhase,
    'installer-prep': installerPrepPhase,
    install: installPhase as Phase<typeof ctx>,
    infect: infectPhase,
    reboot: plan.method === 'infect' ? infectRebootPhase : rebootPhase,
  };
  const meter = memoryMeter(ctx, opts.memorySampleMs ?? 2000);
  const { records, error } = await runPhases(
    names.map((n) => table[n]!),
    ctx,
    opts.log,
    meter,
  );
  meter.stop();
  let host: BootstrapResult['host'] = {
    isNixos: facts.isNixos,
    currentSystem: facts.currentSystem ?? null,
    bootId: facts.bootId,
    variantId: facts.osVariantId ?? '',
  };
  try {
    const who = await whoAnswers(ctx.session);
    host = {
      isNixos: who.isNixos,
      currentSystem: who.currentSystem || null,
      bootId: who.bootId,
      variantId: who.variantId,
    };
  } catch {
    // the host is not answering (a failed reboot): report what the probe saw
  }
  return {
    phases: records,
    host,
    bytesSent: ctx.bytesSent,
    warnings: pre.warnings,
    infect: artifacts.infect ? withoutText(artifacts.infect) : undefined,
    session: ctx.session,
    error,
  };
}
