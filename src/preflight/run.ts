/** The preflight stage: evaluate the configuration's few attributes, check them, render the findings. */
import type { Nix } from '../nix/nix';
import { escapeCell } from '../report/render';
import {
  evaluatePreflightInputs,
  type EvaluateOptions,
  type Evaluation,
  type FlakeConfigRef,
} from './evaluate';
import { findings as check, type PreflightContext } from './rules';
import type { Finding, Severity } from './types';

export interface PreflightResult {
  findings: Finding[];
  /** Wall time of the whole preflight (evaluation + checks). */
  seconds: number;
  /** `nix eval` processes it ran (1 unless an attribute failed to evaluate). */
  nixCalls: number;
}

/**
 * Runs preflight on `flake.ref#nixosConfigurations.<flake.name>`; `evaluation` is that evaluation
 * started ahead (beside the build), else it runs now. Throws PreflightError if the flake does not
 * evaluate.
 */
export async function runPreflight(
  nix: Nix,
  flake: FlakeConfigRef,
  ctx: PreflightContext = {},
  opts: EvaluateOptions & { evaluation?: Promise<Evaluation> } = {},
): Promise<PreflightResult> {
  const start = process.hrtime.bigint();
  const { inputs, nixCalls } = await (opts.evaluation ?? evaluatePreflightInputs(nix, flake, opts));
  const found = check(inputs, ctx);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { findings: found, seconds, nixCalls };
}

/** True when an error remains: the stage stops before touching the VPS (unless overridden). */
export function hasErrors(found: readonly Finding[]): boolean {
  return found.some((f) => f.severity === 'error');
}

function counts(found: readonly Finding[]): string {
  const n = (s: Severity) => found.filter((f) => f.severity === s).length;
  const word = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  return [
    word(n('error'), 'error', 'errors'),
    word(n('warning'), 'warning', 'warnings'),
    word(n('info'), 'note', 'notes'),
  ].join(', ');
}

const ICON: Record<Severity, string> = { error: '❌', warning: '⚠️', info: 'ℹ️' };

/** Markdown for the job summary: a table of findings, then why and fix for each error and warning. */
export function renderFindingsMarkdown(found: readonly Finding[]): string {
  const out = [`### Preflight: ${counts(found)}`];
  if (found.length === 0) {
    out.push('', 'No findings: the configuration passes every check.');
    return out.join('\n');
  }
  out.push('', '| | check | finding |', '| --- | --- | --- |');
  for (const f of found)
    out.push(`| ${ICON[f.severity]} ${f.severity} | \`${f.id}\` | ${escapeCell(f.message)} |`);
  for (const f of found.filter((x) => x.severity !== 'info')) {
    // A fence longer than any backtick run in the fix keeps it a code block.
    const fence = '`'.repeat(
      Math.max(3, ...[...f.fix.matchAll(/`+/g)].map((m) => m[0].length + 1)),
    );
    out.push(
      '',
      `**${ICON[f.severity]} \`${f.id}\`**: ${escapeCell(f.why)}`,
      '',
      `${fence}nix`,
      f.fix,
      fence,
    );
  }
  return out.join('\n');
}

/** Plain text for the terminal. */
export function renderFindingsText(found: readonly Finding[]): string {
  const out = [`preflight: ${counts(found)}`];
  const indent = (s: string) =>
    s
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n');
  for (const f of found) {
    out.push(`${f.severity.toUpperCase().padEnd(7)} ${f.id}: ${f.message}`);
    if (f.severity === 'info') {
      out.push(`  fix: ${f.fix}`);
      continue;
    }
    out.push(`  why: ${f.why}`, '  fix:', indent(f.fix));
  }
  return out.join('\n');
}
