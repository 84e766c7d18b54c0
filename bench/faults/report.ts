/**
 * The campaign's report (issue 21), from the results of one or more parts (bench/faults.sh runs
 * the deploy and the bootstrap faults side by side, each on a VPS of its own): the bad inputs,
 * one Markdown row per fault, and as the last line the figures.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { FaultRow } from './world';

/** What one part of the campaign found, without the outputs it scanned. */
export interface PartResult {
  parts: string[];
  seconds: number;
  ramMiB: number;
  rows: Omit<FaultRow, 'outputs'>[];
  bad: { entry: string; name: string; rejected: boolean; message: string; connections: number }[];
  leaks: number;
  scanned: { outputs: number; files: number; dir: string };
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function writePart(file: string, r: PartResult): void {
  writeFileSync(file, JSON.stringify(r));
}

export function readPart(file: string): PartResult {
  return JSON.parse(readFileSync(file, 'utf8')) as PartResult;
}

/** The report's lines; `wallSeconds` is the whole campaign's, parts side by side. */
export function report(results: PartResult[], wallSeconds: number): string[] {
  const out: string[] = [];
  const bad = results.flatMap((r) => r.bad);
  const rows = results.flatMap((r) => r.rows);
  const rejected = bad.filter((b) => b.rejected).length;
  out.push(`\n## Bad inputs (${rejected} of ${bad.length} refused before any connection)\n`);
  out.push('| entry | input | refused with | connections |', '| --- | --- | --- | --- |');
  for (const b of bad)
    out.push(
      `| ${b.entry} | ${cell(b.name)} | ${b.rejected ? '' : '**NOT REFUSED AS MEANT** '}${cell(b.message)} | ${b.connections} |`,
    );
  const ram = [...new Set(results.map((r) => r.ramMiB))].join('/');
  out.push(`\n## Faults (test VPS: QEMU TCG, ${ram} MiB, stand-ins with ballast 0)\n`);
  out.push(
    '| fault | phase | what happened | how it recovered | seconds |',
    '| --- | --- | --- | --- | --- |',
  );
  for (const r of rows) {
    const flags = [
      r.ok ? '' : '**NOT OK** ',
      r.reachable ? '' : '**unreachable** ',
      r.spareUntouched ? '' : '**spare disk touched** ',
    ].join('');
    out.push(
      `| ${flags}${cell(r.fault)} | ${r.phase} | ${cell(r.happened)} | ${cell(r.recovered)} | ${r.seconds.toFixed(0)} |`,
    );
  }
  const parts = results.map((r) => `${r.parts.join('+')} ${r.seconds.toFixed(0)} s`).join(', ');
  const outputs = results.reduce((a, r) => a + r.scanned.outputs, 0);
  const files = results.reduce((a, r) => a + r.scanned.files, 0);
  const dirs = [...new Set(results.map((r) => r.scanned.dir))].join(', ');
  out.push(
    `\ncampaign: ${wallSeconds.toFixed(0)} s (${parts}); ${rows.filter((r) => r.ok).length} of ${rows.length} faults recovered or refused safely; ${outputs} outputs and ${files} files left in ${dirs} scanned`,
  );
  out.push(
    `faults: ${rows.length} injected, ${rows.filter((r) => !r.reachable).length} unreachable, ${rows.filter((r) => !r.spareUntouched).length} wrong-disk; bad inputs: ${rejected} rejected of ${bad.length}; secrets leaked: ${results.reduce((a, r) => a + r.leaks, 0)}`,
  );
  return out;
}
