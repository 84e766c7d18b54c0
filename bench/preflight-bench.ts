/**
 * Preflight benchmark: the whole preflight (nix eval + checks) on every fixture flake under
 * __tests__/fixtures/preflight, cold (first evaluation of a fresh copy) and warm (median of
 * the rest). Run it with bench/preflight-bench.sh, which compiles this file with tsc.
 * Usage: node preflight-bench.js REPO_ROOT [RUNS]
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localNix, type Nix } from '../src/nix/nix';
import type { Facts } from '../src/probe/facts';
import { runPreflight } from '../src/preflight/run';

const DEPLOY_KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/UnUMJXly6GKaAAJ4BbkHdfkE07/ga+GhJ9cZ/aJVV deploy@bench';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
};

async function main(): Promise<void> {
  const root = process.argv[2] ?? process.cwd();
  const runs = Math.max(2, Number(process.argv[3] ?? 5));
  const dir = join(root, '__tests__', 'fixtures', 'preflight');
  const facts = JSON.parse(
    readFileSync(join(dir, 'facts-debian-12-1gb-static.json'), 'utf8'),
  ) as Facts;
  const ctx = { facts, plan: { method: 'kexec' as const }, deployPublicKey: DEPLOY_KEY };
  let calls = 0;
  const real = localNix();
  const nix: Nix = {
    run: (args, opts) => {
      calls++;
      return real.run(args, opts);
    },
  };
  const fixtures = readdirSync(dir).filter((d) => existsSync(join(dir, d, 'flake.nix')));
  const rows: string[] = ['| fixture | findings (E/W/I) | nix calls | cold s | warm s (median) |'];
  rows.push('| --- | --- | --- | --- | --- |');
  let coldTotal = 0;
  let warmTotal = 0;
  for (const name of fixtures) {
    const copy = mkdtempSync(join(tmpdir(), `vps-nixos-bench-${name}-`));
    cpSync(join(dir, name), copy, { recursive: true });
    const times: number[] = [];
    let summary = '';
    let perRun = 0;
    for (let i = 0; i < runs; i++) {
      const before = calls;
      const r = await runPreflight(nix, { ref: copy, name: 'vps' }, ctx);
      perRun = calls - before;
      times.push(r.seconds);
      const n = (s: string) => r.findings.filter((f) => f.severity === s).length;
      summary = `${n('error')}/${n('warning')}/${n('info')}`;
    }
    rmSync(copy, { recursive: true, force: true });
    const cold = times[0] as number;
    const warm = median(times.slice(1));
    coldTotal += cold;
    warmTotal += warm;
    rows.push(`| ${name} | ${summary} | ${perRun} | ${cold.toFixed(3)} | ${warm.toFixed(3)} |`);
  }
  rows.push(
    `| **all ${fixtures.length}** | | ${calls} in ${runs} rounds | ${coldTotal.toFixed(3)} | ${warmTotal.toFixed(3)} |`,
  );
  const version = (await real.run(['--version'])).stdout.trim();
  console.log(`preflight bench: ${version}, ${runs} runs per fixture, node ${process.version}\n`);
  console.log(rows.join('\n'));
  console.log(
    `\nwhole preflight per configuration: cold ${(coldTotal / fixtures.length).toFixed(3)} s, warm ${(warmTotal / fixtures.length).toFixed(3)} s (mean over fixtures)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
