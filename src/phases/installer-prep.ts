/**
 * Phase 2: prepare the kexec installer: zram again (kexec replaced the kernel), the disk script
 * (unpacked into the installer's RAM and checked by sha256: the installer has no Nix) and its
 * udevadm calls bounded.
 */
import { VpsNixosError } from '../errors';
import { formatBytes } from '../size';
import type { RemoteSession } from '../ssh/session';
import { lineStream, type Phase } from './phase';
import { parseKv, prepPhase } from './prep';
import { filesPresent, localClosure, sendClosure } from '../nix/transfer';
import { runScript } from '../ssh/script';

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
  const closure = await localClosure([ctx.diskScript ?? '']);
  const r = await runScript(ctx.session, 'phases/disko-patch.sh', {
    args: [action, ctx.diskScript ?? ''],
    stdin: closure.join('\n') + '\n',
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
  const closure = await localClosure([ctx.diskScript]);
  if (!(await filesPresent(ctx.session, closure, '/')))
    return { done: false, text: 'disk script not in the installer yet' };
  if (!ctx.patchUdevadm) return { done: true, text: 'disk script present (udevadm not patched)' };
  const v = await diskoPatch(ctx, 'check');
  return {
    done: v.pending === '0',
    text: `disk script present, udevadm patched in ${v.patched} of ${v.files} files`,
  };
}

/**
 * zram, as in prep but without a swapfile (the installer's root is a tmpfs: swapon refuses it)
 * and without tools to install (the installer has no package manager; its tools are checked when
 * it is built: scripts/installer-tools.txt).
 */
function zramOnly(ctx: InstallerPrepContext) {
  return {
    session: ctx.session,
    plan: { zramBytes: ctx.zramBytes, swapfileBytes: 0 },
    isContainer: false,
    tools: 'sh',
    log: ctx.log,
  };
}

export const installerPrepPhase: Phase<InstallerPrepContext> = {
  name: 'installer-prep',
  timeoutMs: 5 * 60_000,
  onTimeout: 'the installer does not respond: check its console (out of memory?)',
  async detect(ctx) {
    const zram = await prepPhase.detect(zramOnly(ctx));
    const script = await diskScriptState(ctx);
    return { done: zram.done && script.done, evidence: `${zram.evidence}; ${script.text}` };
  },
  async run(ctx) {
    const zram = await prepPhase.run(zramOnly(ctx));
    let script = '';
    if (ctx.diskScript) {
      const sent = await sendClosure(ctx.session, [ctx.diskScript], {
        storeRoot: '/',
        log: ctx.log,
      });
      ctx.bytesSent = (ctx.bytesSent ?? 0) + sent.bytesSent;
      script = `; disk script: ${sent.sent} paths sent (${formatBytes(sent.bytesSent)})`;
      if (ctx.patchUdevadm) {
        const v = await diskoPatch(ctx, 'apply');
        script += `, udevadm trigger/settle bounded (a sleep if they fail) in ${v.patched} of ${v.files} files`;
      }
    }
    return `${zram}${script}`;
  },
};
