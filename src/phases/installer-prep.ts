/** Phase 2: prepare the kexec installer (zram again, Nix GC limits below the store's free space). */
import { readAsset } from '../assets';
import { VpsNixosError } from '../errors';
import { formatBytes } from '../size';
import type { RemoteSession } from '../ssh/session';
import type { Phase } from './phase';
import { parseKv, prepPhase } from './prep';

export interface InstallerPrepContext {
  session: RemoteSession;
  zramBytes: number;
  log: (line: string) => void;
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
    return {
      done: zram.done && limits.ok === 'yes',
      evidence: `${zram.evidence}; Nix min-free ${limits.min_free}, max-free ${limits.max_free}, store free ${formatBytes(Number(limits.store_free_bytes))}`,
    };
  },
  async run(ctx) {
    const zram = await prepPhase.run(zramOnly(ctx));
    const limits = await nixLimits(ctx, false);
    return `${zram}; Nix min-free ${formatBytes(Number(limits.min_free))}, max-free ${formatBytes(Number(limits.max_free))} (store free ${formatBytes(Number(limits.store_free_bytes))})`;
  },
};
