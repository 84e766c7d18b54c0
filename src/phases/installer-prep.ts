/** Phase 2: prepare the kexec installer (zram again, Nix GC limits below the store's free space). */
import { readAsset } from '../assets';
import { shellQuote } from '../shell';
import { VpsNixosError } from '../errors';
import { formatBytes } from '../size';
import type { RemoteSession } from '../ssh/session';
import { lineStream, type Phase } from './phase';
import { parseKv, prepPhase } from './prep';
import { remoteInvalid, sendClosure } from '../nix/transfer';

export interface InstallerPrepContext {
  session: RemoteSession;
  zramBytes: number;
  log: (line: string) => void;
  /** The disk script, sent into the installer's store here (it is small: tools not included). */
  diskScript?: string;
  /** Patch the disk script's udevadm calls (decided from `patch-udevadm` and the facts). */
  patchUdevadm?: boolean;
  /** Bytes sent by this phase, for the report. */
  bytesSent?: number;
}

/** `patch-udevadm: auto` patches on virtual machines, whose disks show the SIGBUS (seed bug 2). */
export function shouldPatchUdevadm(
  setting: 'auto' | 'true' | 'false',
  virtualization: string,
): boolean {
  if (setting !== 'auto') return setting === 'true';
  return virtualization !== 'none' && virtualization !== '';
}

async function diskoPatch(
  ctx: InstallerPrepContext,
  action: 'check' | 'apply',
): Promise<Record<string, string>> {
  const r = await ctx.session.exec(`sh -s -- ${action} ${shellQuote(ctx.diskScript ?? '')}`, {
    stdin: readAsset('scripts/phases/disko-patch.sh'),
    timeoutMs: 2 * 60_000,
    onOutput: lineStream(ctx.log, ['stderr']),
  });
  const { values } = parseKv(r.stdout);
  if (r.code !== 0)
    throw new VpsNixosError(
      `patching the disk script's udevadm calls failed: ${values.error ?? r.stderr.trim()}`,
      'set patch-udevadm: false to run the disk script unpatched',
    );
  return values;
}

/** Is the disk script in the installer's store, and patched when it should be? */
async function diskScriptState(
  ctx: InstallerPrepContext,
): Promise<{ done: boolean; text: string }> {
  if (!ctx.diskScript) return { done: true, text: 'no disk script' };
  const missing = await remoteInvalid(ctx.session, [ctx.diskScript]);
  if (missing.length > 0) return { done: false, text: 'disk script not in the installer yet' };
  if (!ctx.patchUdevadm) return { done: true, text: 'disk script present (udevadm not patched)' };
  const v = await diskoPatch(ctx, 'check');
  return {
    done: v.pending === '0',
    text: `disk script present, udevadm patched in ${v.patched} of ${v.files} files`,
  };
}

async function nixLimits(
  ctx: InstallerPrepContext,
  check: boolean,
): Promise<Record<string, string>> {
  const r = await ctx.session.exec(`sh -s${check ? ' -- --check' : ''}`, {
    stdin: readAsset('scripts/phases/nix-limits.sh'),
    timeoutMs: 60_000,
  });
  if (r.code !== 0)
    throw new VpsNixosError(
      `setting Nix's GC limits in the installer failed: ${r.stderr.trim()}`,
      'check /etc/nix in the installer',
    );
  return parseKv(r.stdout).values;
}

/** zram, as in prep but without a swapfile: the installer's root is a tmpfs and swapon refuses it. */
function zramOnly(ctx: InstallerPrepContext) {
  return {
    session: ctx.session,
    plan: { zramBytes: ctx.zramBytes, swapfileBytes: 0 },
    isContainer: false,
    log: ctx.log,
  };
}

export const installerPrepPhase: Phase<InstallerPrepContext> = {
  name: 'installer-prep',
  timeoutMs: 5 * 60_000,
  onTimeout: 'the installer does not respond: check its console (out of memory?)',
  async detect(ctx) {
    const zram = await prepPhase.detect(zramOnly(ctx));
    const limits = await nixLimits(ctx, true);
    const script = await diskScriptState(ctx);
    return {
      done: zram.done && limits.ok === 'yes' && script.done,
      evidence: `${zram.evidence}; Nix min-free ${limits.min_free}, max-free ${limits.max_free}, store free ${formatBytes(Number(limits.store_free_bytes))}; ${script.text}`,
    };
  },
  async run(ctx) {
    const zram = await prepPhase.run(zramOnly(ctx));
    const limits = await nixLimits(ctx, false);
    let script = '';
    if (ctx.diskScript) {
      const sent = await sendClosure(ctx.session, [ctx.diskScript], { log: ctx.log });
      ctx.bytesSent = (ctx.bytesSent ?? 0) + sent.bytesSent;
      script = `; disk script: ${sent.sent} paths sent (${formatBytes(sent.bytesSent)})`;
      if (ctx.patchUdevadm) {
        const v = await diskoPatch(ctx, 'apply');
        script += `, udevadm trigger/settle replaced by a sleep in ${v.patched} of ${v.files} files`;
      }
    }
    return `${zram}; Nix min-free ${formatBytes(Number(limits.min_free))}, max-free ${formatBytes(Number(limits.max_free))} (store free ${formatBytes(Number(limits.store_free_bytes))})${script}`;
  },
};
