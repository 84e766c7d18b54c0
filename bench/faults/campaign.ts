/**
 * npm run bench:faults (bench/faults.sh runs this inside the test VPS's netns): the fault
 * campaign of issue 21. Bad inputs through the built CLI and the action; faults across the
 * bootstrap and the deploy on the test VPS; a scan of every output and of the temp dirs left for
 * key material; then one Markdown row per fault and, as the last line, the figures.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  badInputs,
  campaignFiles,
  countingListener,
  filesUnder,
  runBadInput,
} from '../../__tests__/helpers/faults/bad-inputs';
import { bootstrapFaults } from './bootstrap-faults';
import { deployFaults } from './deploy-faults';
import { World, type FaultRow } from './world';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

async function main(): Promise<void> {
  const only = process.argv[2] ?? 'all';
  const t0 = Date.now();
  // Bad inputs: no VM needed, a listener that counts connections.
  const files = campaignFiles();
  const listener = await countingListener();
  const bad = [];
  for (const c of badInputs(files)) bad.push(await runBadInput(c, listener, files));
  await listener.close();
  const rejected = bad.filter((b) => b.rejected).length;
  console.log(`\n## Bad inputs (${rejected} of ${bad.length} refused before any connection)\n`);
  console.log('| entry | input | refused with | connections |');
  console.log('| --- | --- | --- | --- |');
  for (const b of bad)
    console.log(
      `| ${b.case.entry} | ${cell(b.case.name)} | ${b.rejected ? '' : '**NOT REFUSED AS MEANT** '}${cell(b.message)} | ${b.connections} |`,
    );

  const w = new World();
  const tmpBefore = new Set(readdirSync(tmpdir()));
  const rows: FaultRow[] = [];
  const part = async (name: string, fn: (into: FaultRow[]) => Promise<void>) => {
    if (only !== 'all' && only !== name) return;
    const p0 = Date.now();
    try {
      await fn(rows);
    } catch (err) {
      rows.push({
        fault: `${name} faults: the campaign itself stopped`,
        phase: name,
        happened: (err as Error).message.slice(0, 300),
        recovered: '',
        seconds: (Date.now() - p0) / 1000,
        reachable: (await w.who(60_000)) !== undefined,
        spareUntouched: w.spareUntouched(),
        ok: false,
        outputs: [],
      });
    }
    process.stderr.write(`faults: ${name} done in ${((Date.now() - p0) / 1000).toFixed(0)} s\n`);
  };
  await part('deploy', (into) => deployFaults(w, into));
  await part('bootstrap', (into) => bootstrapFaults(w, into));

  // Secrets: every output of every run, and whatever the runs left in the temp dir.
  const left = readdirSync(tmpdir())
    .filter((d) => !tmpBefore.has(d) && d.startsWith('vps-nixos-'))
    .flatMap((d) => {
      try {
        return filesUnder(join(tmpdir(), d));
      } catch {
        return [];
      }
    });
  const texts = [...rows.flatMap((r) => r.outputs), ...left.map((f) => f.text)];
  const leaks =
    texts.filter((t) =>
      [...w.keyLines, ...files.keyLines].some((l) => l.length > 20 && t.includes(l)),
    ).length + bad.filter((b) => b.keyLeaked).length;

  console.log(`\n## Faults (test VPS: QEMU TCG, ${w.vps.ramMiB} MiB, stand-ins with ballast 0)\n`);
  console.log('| fault | phase | what happened | how it recovered | seconds |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const flags = [
      r.ok ? '' : '**NOT OK** ',
      r.reachable ? '' : '**unreachable** ',
      r.spareUntouched ? '' : '**spare disk touched** ',
    ].join('');
    console.log(
      `| ${flags}${cell(r.fault)} | ${r.phase} | ${cell(r.happened)} | ${cell(r.recovered)} | ${r.seconds.toFixed(0)} |`,
    );
  }
  console.log(
    `\ncampaign: ${((Date.now() - t0) / 1000).toFixed(0)} s; ${rows.filter((r) => r.ok).length} of ${rows.length} faults recovered or refused safely; ${texts.length + bad.length} outputs and ${left.length} files left in ${tmpdir()} scanned`,
  );
  console.log(
    `faults: ${rows.length} injected, ${rows.filter((r) => !r.reachable).length} unreachable, ${rows.filter((r) => !r.spareUntouched).length} wrong-disk; bad inputs: ${rejected} rejected of ${bad.length}; secrets leaked: ${leaks}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
