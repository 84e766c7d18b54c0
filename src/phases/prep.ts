/** Phase 0: prepare the running distribution (tools, free memory, zram, swapfile on disk). */
import { VpsNixosError } from '../errors';
import type { Plan } from '../plan/plan';
import type { RemoteSession } from '../ssh/session';
import { lineStream, type Phase } from './phase';
import { runScript } from '../ssh/script';

export interface PrepContext {
  session: RemoteSession;
  plan: Pick<Plan, 'zramBytes' | 'swapfileBytes'>;
  /** Where the swapfile goes: on the root disk, never a tmpfs. */
  swapfilePath?: string;
  /** Containers can neither load zram nor swapon: only the tools count there. */
  isContainer: boolean;
  /** What the next phase needs (prep.sh --tools): kexec's by default, or INFECT_TOOLS. */
  tools?: string;
  log: (line: string) => void;
}

/** The commands the kexec path needs on the distribution (cpio packs the installer's keys). */
export const KEXEC_TOOLS = 'cpio tar setsid';
/** nixos-infect's own checks (curl or wget, bzcat, xzcat, groupadd, useradd, ip, awk), bash, setsid. */
export const INFECT_TOOLS = 'bash tar setsid bzcat xzcat curl|wget groupadd useradd ip awk';

export const DEFAULT_SWAPFILE = '/var/lib/vps-nixos/swapfile';

/** key=value lines as a map (last one wins; warnings collected). */
export function parseKv(text: string): { values: Record<string, string>; warnings: string[] } {
  const values: Record<string, string> = {};
  const warnings: string[] = [];
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    if (k === 'warning') warnings.push(v);
    else values[k] = v;
  }
  return { values, warnings };
}

function args(ctx: PrepContext): string[] {
  return [
    '--tools',
    ctx.tools ?? KEXEC_TOOLS,
    String(ctx.plan.zramBytes ?? 0),
    String(ctx.plan.swapfileBytes ?? 0),
    ctx.swapfilePath ?? DEFAULT_SWAPFILE,
  ];
}

async function prepScript(
  ctx: PrepContext,
  check: boolean,
  timeoutMs: number,
): Promise<ReturnType<typeof parseKv>> {
  const r = await runScript(ctx.session, 'phases/prep.sh', {
    args: check ? ['--check', ...args(ctx)] : args(ctx),
    timeoutMs,
    onOutput: check ? undefined : lineStream(ctx.log, ['stderr']),
  });
  const out = parseKv(r.stdout);
  if (r.code !== 0) {
    throw new VpsNixosError(
      `prep failed on the target: ${out.values.error ?? r.stderr.trim().split('\n').slice(-2).join(' | ')}`,
      `install what is missing by hand (${ctx.tools ?? KEXEC_TOOLS}; a|b: either), then re-run`,
    );
  }
  return out;
}

export const prepPhase: Phase<PrepContext> = {
  name: 'prep',
  timeoutMs: 15 * 60_000,
  onTimeout:
    'the package install on the target is slow or stuck: check its mirror (apt/dnf/pacman) and free disk',
  async detect(ctx) {
    const { values } = await prepScript(ctx, true, 60_000);
    const missing = values.missing_tools ?? '';
    const zramOk = ctx.isContainer || !(ctx.plan.zramBytes ?? 0) || values.zram !== 'none';
    const swapOk = ctx.isContainer || !(ctx.plan.swapfileBytes ?? 0) || values.swapfile !== 'none';
    return {
      done: missing === '' && zramOk && swapOk,
      evidence: `tools ${missing ? `missing: ${missing}` : 'present'}, zram ${values.zram}, swapfile ${values.swapfile}`,
    };
  },
  async run(ctx) {
    const { values, warnings } = await prepScript(ctx, false, this.timeoutMs);
    for (const w of warnings) ctx.log(`warning: ${w}`);
    return `installed ${values.installed || 'nothing'}, zram ${values.zram}, swapfile ${values.swapfile}, MemAvailable ${values['mem.MemAvailable']} B`;
  },
};
