// npm run build: typecheck, then bundle the three entries with ncc (dist/main, dist/post,
// dist/cli), each with the complete third-party notices of what it bundles, and nothing for
// another platform. ncc's own --license list leaves out packages whose code lands in a split
// chunk (ssh2, zod and the @actions packages were missing from dist/main/licenses.txt), so the
// notices are written from webpack's stats: every package a bundled module comes from, with its
// license file. ssh2 ships pagent.exe (PuTTY's agent on Windows), which ncc copies as an asset:
// the action and the CLI run on Linux, so it is removed. ncc only transpiles (-t): tsc has
// typechecked the whole program once already, and the bundles are byte for byte the same.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = (name) => path.join(ROOT, 'node_modules/.bin', name);
const run = (cmd, args) => execFileSync(cmd, args, { cwd: ROOT, stdio: 'inherit' });

// DIST_DIR: build elsewhere (a dry run next to the committed dist/).
const dist = path.resolve(ROOT, process.env.DIST_DIR || 'dist');
run(bin('tsc'), ['--noEmit']);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vps-nixos-build-'));
try {
  for (const entry of ['main', 'post', 'cli']) {
    const out = path.join(dist, entry);
    // ncc writes into the directory as it finds it: a chunk an older build split off would
    // stay beside the new ones (dist/main/485.index.js did, 650 KB nothing loads).
    fs.rmSync(out, { recursive: true, force: true });
    const stats = path.join(tmp, `${entry}.json`);
    run(bin('ncc'), ['build', `src/${entry}.ts`, '-o', out, '-q', '-t', '--stats-out', stats]);
    for (const f of fs.readdirSync(out)) if (f.endsWith('.exe')) fs.rmSync(path.join(out, f));
    fs.writeFileSync(path.join(out, 'licenses.txt'), notices(JSON.parse(fs.readFileSync(stats))));
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

/** The package dirs (node_modules/…/name) of every module in the stats, including chunks. */
function packages(stats) {
  const dirs = new Set();
  const visit = (m) => {
    for (const id of [m.identifier, m.name, m.nameForCondition]) {
      if (typeof id !== 'string') continue;
      const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(
        id.replace(/^.*!/, '').replaceAll('\\', '/'),
      );
      if (match) dirs.add(path.resolve(ROOT, match[1]));
    }
    for (const sub of m.modules ?? []) visit(sub);
  };
  for (const m of stats.modules ?? []) visit(m);
  for (const c of stats.chunks ?? []) for (const m of c.modules ?? []) visit(m);
  return [...dirs];
}

function notices(stats) {
  const seen = new Map();
  for (const dir of packages(stats)) {
    const pkgFile = path.join(dir, 'package.json');
    if (!fs.existsSync(pkgFile)) continue;
    const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
    const key = `${pkg.name}@${pkg.version}`;
    if (seen.has(key)) continue;
    const file = fs
      .readdirSync(dir)
      .sort()
      .find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
    const text = file ? fs.readFileSync(path.join(dir, file), 'utf8').trim() : '';
    const license = typeof pkg.license === 'string' ? pkg.license : 'see package';
    seen.set(
      key,
      `${pkg.name} ${pkg.version}\n${license}\n${text || `(no license file; ${license})`}`,
    );
  }
  const sorted = [...seen.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => t);
  return `${sorted.join('\n\n')}\n`;
}

process.exitCode = 0;
