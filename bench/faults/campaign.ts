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
import { BOOTSTRAP_SECTIONS, bootstrapFaults, type BootstrapSection } from './bootstrap-faults';
import { deployFaults } from './deploy-faults';
import { report, writePart, type PartResult } from './report';
import { World, type FaultRow } from './world';

/**
 * campaign.js [PARTS] [--no-bad-inputs] [--json FILE]: the parts asked for on this
 * VPS; with --json, what they found goes to FILE for merge.js instead of the report.
 */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // PARTS: all, deploy, bootstrap, or a comma list of deploy and bootstrap's sections
  const asked = (args[0] && !args[0].startsWith('--') ? args[0] : 'all').split(',');
  const only = asked.flatMap((p) =>
    p === 'all'
      ? ['deploy', ...BOOTSTRAP_SECTIONS]
      : p === 'bootstrap'
        ? [...BOOTSTRAP_SECTIONS]
        : [p],
  );
  for (const p of only)
    if (p !== 'deploy' && !(BOOTSTRAP_SECTIONS as readonly string[]).includes(p))
      throw new Error(
        `unknown part ${p}: all, deploy, bootstrap, ${BOOTSTRAP_SECTIONS.join(', ')}`,
      );
  const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
  const t0 = Date.now();
  // Bad inputs: no VM needed, a listener that counts connections.
  const files = campaignFiles();
  const bad = [];
  if (!args.includes('--no-bad-inputs')) {
    const listener = await countingListener();
    for (const c of badInputs(files)) bad.push(await runBadInput(c, listener, files));
    await listener.close();
  }

  const w = new World();
  const tmpBefore = new Set(readdirSync(tmpdir()));
  const rows: FaultRow[] = [];
  const ran: string[] = [];
  const part = async (name: string, fn: (into: FaultRow[]) => Promise<void>) => {
    ran.push(name);
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
  if (only.includes('deploy')) await part('deploy', (into) => deployFaults(w, into));
  const sections = BOOTSTRAP_SECTIONS.filter((s) => only.includes(s));
  if (sections.length)
    await part(sections.join('+'), (into) =>
      bootstrapFaults(w, into, sections as BootstrapSection[]),
    );

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
  const result: PartResult = {
    parts: ran,
    seconds: (Date.now() - t0) / 1000,
    ramMiB: w.vps.ramMiB,
    rows: rows.map(({ outputs: _outputs, ...row }) => row),
    bad: bad.map((b) => ({
      entry: b.case.entry,
      name: b.case.name,
      rejected: b.rejected,
      message: b.message,
      connections: b.connections,
    })),
    leaks,
    scanned: { outputs: texts.length + bad.length, files: left.length, dir: tmpdir() },
  };
  if (jsonOut) writePart(jsonOut, result);
  else for (const line of report([result], result.seconds)) console.log(line);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
