/** The build stage: the user's system closure and disk script, reported, budgeted and cached. */
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FlakeRef } from '../inputs';
import { VpsNixosError } from '../errors';
import { formatBytes } from '../size';
import { cacheKey, cacheKeyPrefix } from '../cache/keys';
import { dirBytes, type CacheStore } from '../cache/store';
import {
  closureReport,
  parsePathInfo,
  storeName,
  trimmingSavings,
  type ClosureReport,
  type PathInfo,
  type Trimming,
} from './closure';
import { NixError, nixErrorText, type Nix } from './nix';
import { evalLayout, layoutTools, type DiskoLayout } from './layout';
import { findSystemNix } from './system-nix';

export class BuildError extends VpsNixosError {}

/** The closure is larger than the budget; raised before anything touches the target. */
export class BudgetExceeded extends VpsNixosError {}

export interface BuildRequest {
  flake: FlakeRef;
  /** Which disko output to build; `required` when the plan partitions the disk (else a missing one is fine). */
  diskScript?: { attr: 'diskoScriptNoDeps' | 'diskoScript'; required: boolean };
  closureBudgetBytes?: number;
  /** Also build the configuration without the vpsNixos module and report what it saves. */
  measureTrimming?: boolean;
  /** Evaluate the disko layout (the installer's tools, the disks it formats): when the run may install. */
  layout?: boolean;
  cache?: { store: CacheStore; dir: string; capBytes: number };
  /** The toplevel's evaluation, when the run already did it (it is not repeated). */
  evaluated?: Evaluated;
  toolVersion: string;
  log: (line: string) => void;
  warn: (line: string) => void;
}

export interface CacheOutcome {
  kind: string;
  key: string;
  /**
   * exact: the cache has this closure (restored if the store lacked it); in-store: the store has it
   * but the cache does not (saved now); partial: started from an older closure; miss: built from scratch.
   */
  hit: 'exact' | 'in-store' | 'partial' | 'miss';
  restoredKey?: string;
  restoredPaths: number;
  saved: 'saved' | 'exists' | 'skipped-over-cap' | 'not-needed';
  bytes?: number;
}

export interface BuildResult {
  toplevel: string;
  drvPath: string;
  system: string;
  diskScript?: string;
  closure: ClosureReport;
  cache?: CacheOutcome;
  /**
   * The closure's own Nix (`readlink -f <toplevel>/sw/bin/nix-store`, up to its store path): the
   * installer has none, so the install runs `chroot /mnt <nixStorePath>/bin/nix-store`. Undefined
   * when the closure has no Nix (nix.enable = false): then an install is refused after the plan.
   */
  nixStorePath?: string;
  /** The disko layout (when asked for and the configuration has disko); undefined: unknown. */
  layout?: DiskoLayout;
  /** Every path of the closure with its size (for the diff against the target's system). */
  paths: PathInfo[];
  seconds: number;
}

function attr(flake: FlakeRef, path: string): string {
  const name = /^[A-Za-z0-9_-]+$/.test(flake.name) ? flake.name : `"${flake.name}"`;
  return `${flake.ref}#nixosConfigurations.${name}.${path}`;
}

function evalError(flake: FlakeRef, what: string, stderr: string): VpsNixosError {
  const text = nixErrorText(stderr);
  if (/does not provide attribute|attribute '.*' missing/.test(stderr)) {
    return new BuildError(
      `flake '${flake.ref}' has no nixosConfigurations.${flake.name}.${what} (${text})`,
      `check the name after '#': nix flake show ${flake.ref} lists the configurations`,
    );
  }
  if (
    /(does not exist|No such file|cannot find flake|is not a flake|could not find a flake)/i.test(
      stderr,
    )
  ) {
    return new BuildError(
      `flake '${flake.ref}' not found (${text})`,
      'check the flake input: a path to a directory with flake.nix, or a flake URL',
    );
  }
  return new BuildError(
    `evaluating ${attr(flake, what)} failed: ${text}`,
    'run the same nix eval locally to see the whole error',
  );
}

/** The configuration's toplevel as one evaluation gives it: no build. */
export interface Evaluated {
  drvPath: string;
  outPath: string;
  system: string;
}

/** One evaluation for what the cache key, the validity check and an unchanged deploy need. */
export async function evalToplevel(nix: Nix, flake: FlakeRef): Promise<Evaluated> {
  const path = 'config.system.build.toplevel';
  const r = await nix.run([
    'eval',
    '--json',
    attr(flake, path),
    '--apply',
    // An attrset with an outPath would be printed as that string: rename the keys.
    'd: { drv = d.drvPath; out = d.outPath; system = d.system or "x86_64-linux"; }',
  ]);
  if (r.code !== 0) throw evalError(flake, path, r.stderr);
  const v = JSON.parse(r.stdout) as { drv: string; out: string; system: string };
  return { drvPath: v.drv, outPath: v.out, system: v.system };
}

async function isValid(nix: Nix, path: string): Promise<boolean> {
  return (await nix.run(['path-info', path])).code === 0;
}

async function buildOut(
  nix: Nix,
  installable: string,
  log: (l: string) => void,
): Promise<{ out: string; stderr: string; code: number }> {
  const r = await nix.run(['build', '--no-link', '--json', installable], {
    onStderr: (l) => l.trim() && log(l),
  });
  if (r.code !== 0) return { out: '', stderr: r.stderr, code: r.code };
  const doc = JSON.parse(r.stdout) as { outputs: Record<string, string> }[];
  return { out: doc[0]?.outputs.out ?? '', stderr: r.stderr, code: 0 };
}

const MANIFEST = 'vps-nixos-paths.txt';

/** Copies every path the restored file cache lists into the local store; returns how many are now valid. */
async function importFileCache(nix: Nix, dir: string): Promise<number> {
  const manifest = join(dir, MANIFEST);
  if (!existsSync(manifest)) return 0;
  const paths = readFileSync(manifest, 'utf8').split('\n').filter(Boolean);
  if (paths.length === 0) return 0;
  const r = await nix.run(['copy', '--no-check-sigs', '--from', `file://${dir}`, ...paths]);
  if (r.code !== 0)
    throw new NixError(
      `restoring the closure from the cache failed: ${nixErrorText(r.stderr)}`,
      'the cache entry may be damaged; delete it and re-run',
    );
  return paths.length;
}

/** Writes the closure into a fresh zstd file binary cache, with a manifest of its paths. */
async function exportFileCache(
  nix: Nix,
  dir: string,
  roots: string[],
  closurePaths: string[],
): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const r = await nix.run(['copy', '--to', `file://${dir}?compression=zstd`, ...roots]);
  if (r.code !== 0)
    throw new NixError(
      `writing the closure cache failed: ${nixErrorText(r.stderr)}`,
      'check free space under the cache directory',
    );
  writeFileSync(join(dir, MANIFEST), closurePaths.join('\n') + '\n');
}

/** Checks Nix is there and says which, before anything else. */
export async function nixVersion(nix: Nix): Promise<string> {
  const r = await nix.run(['--version']);
  if (r.code !== 0)
    throw new NixError(
      `'nix --version' failed: ${nixErrorText(r.stderr)}`,
      'repair the Nix installation on the runner',
    );
  return r.stdout.trim();
}

/** Builds toplevel (+ disk script), reports the closure, enforces the budget, and caches the closure. */
/** Builds system.build.vpsNixosUntrimmed (set by our module) and compares its closure. */
async function measureTrimming(
  nix: Nix,
  req: BuildRequest,
  trimmed: PathInfo[],
): Promise<Trimming | undefined> {
  const has = await nix.run([
    'eval',
    '--json',
    attr(req.flake, 'config.system.build'),
    '--apply',
    'b: b ? vpsNixosUntrimmed',
  ]);
  if (has.code !== 0 || has.stdout.trim() !== 'true') {
    req.warn(
      'measure-trimming: the configuration has no system.build.vpsNixosUntrimmed: import our nixosModules.default to see what it saves',
    );
    return undefined;
  }
  req.log('measure-trimming: building the same configuration without the vpsNixos module');
  const b = await buildOut(nix, attr(req.flake, 'config.system.build.vpsNixosUntrimmed'), req.log);
  if (b.code !== 0) {
    req.warn(`measure-trimming: the untrimmed build failed: ${nixErrorText(b.stderr)}`);
    return undefined;
  }
  const info = await nix.run(['path-info', '--json', '-rsS', b.out]);
  if (info.code !== 0) return undefined;
  const t = trimmingSavings(trimmed, parsePathInfo(info.stdout), b.out);
  req.log(
    `measure-trimming: the module saves ${formatBytes(t.savedBytes)} (without it: ${formatBytes(t.untrimmedNarBytes)})`,
  );
  return t;
}

export async function buildSystem(nix: Nix, req: BuildRequest): Promise<BuildResult> {
  const start = Date.now();
  if (!req.evaluated) req.log(`nix: ${await nixVersion(nix)}`);
  const { drvPath, outPath, system } = req.evaluated ?? (await evalToplevel(nix, req.flake));
  let cache: CacheOutcome | undefined;
  if (req.cache) {
    const parts = { system, name: req.flake.name, drvPath, toolVersion: req.toolVersion };
    const key = cacheKey(parts);
    const base = {
      kind: req.cache.store.kind,
      key,
      restoredPaths: 0,
      saved: 'not-needed' as const,
    };
    if (await isValid(nix, outPath)) {
      // Nothing to build: restore nothing; save only if the cache lacks this closure.
      cache = {
        ...base,
        hit: (await req.cache.store.has(req.cache.dir, key)) ? 'exact' : 'in-store',
      };
    } else {
      const restoredKey = await req.cache.store.restore(req.cache.dir, key, [
        cacheKeyPrefix(parts),
      ]);
      const restoredPaths = restoredKey ? await importFileCache(nix, req.cache.dir) : 0;
      cache = {
        ...base,
        restoredKey,
        restoredPaths,
        hit: restoredKey === key ? 'exact' : restoredKey ? 'partial' : 'miss',
      };
    }
    req.log(
      `cache ${cache.hit}${cache.restoredKey ? ` (${cache.restoredKey}, ${cache.restoredPaths} paths)` : ''}`,
    );
  }
  const top = await buildOut(nix, attr(req.flake, 'config.system.build.toplevel'), req.log);
  if (top.code !== 0)
    throw new BuildError(
      `building the system failed: ${nixErrorText(top.stderr)}`,
      'run nix build on the same attribute locally to see the whole log',
    );
  let diskScript: string | undefined;
  if (req.diskScript) {
    const d = await buildOut(
      nix,
      attr(req.flake, `config.system.build.${req.diskScript.attr}`),
      req.log,
    );
    if (d.code !== 0) {
      const missing = /does not provide attribute|attribute '.*' missing/.test(d.stderr);
      if (missing && !req.diskScript.required) {
        req.log('no disko configuration: no disk script built (only the kexec method needs one)');
      } else if (missing) {
        throw new BuildError(
          `nixosConfigurations.${req.flake.name} has no disko configuration (config.system.build.${req.diskScript.attr} is missing), but the plan partitions the disk`,
          "import disko.nixosModules.disko and define disko.devices (see nix/README.md), or use method infect to keep the provider's partitions",
        );
      } else {
        throw new BuildError(
          `building the disk script failed: ${nixErrorText(d.stderr)}`,
          'run nix build on the same attribute locally',
        );
      }
    } else {
      diskScript = d.out;
    }
  }
  let layout: DiskoLayout | undefined;
  if (req.layout) {
    layout = await evalLayout(nix, attr(req.flake, 'config'), req.warn);
    if (layout)
      req.log(
        `disko layout: ${layout.used.join(', ') || 'empty'}; installer tools: ${layoutTools(layout).tools.join(' ')}`,
      );
  }
  const systemNix = findSystemNix(top.out);
  const nixStorePath =
    systemNix && 'nixStorePath' in systemNix ? systemNix.nixStorePath : undefined;
  req.log(
    nixStorePath
      ? `the closure's Nix: ${nixStorePath}`
      : `the closure has no Nix (${top.out}/sw/bin/nix-store)`,
  );
  const info = await nix.run(['path-info', '--json', '-rsS', top.out]);
  if (info.code !== 0)
    throw new NixError(
      `nix path-info failed: ${nixErrorText(info.stderr)}`,
      'check the Nix store on the runner',
    );
  const infos = parsePathInfo(info.stdout);
  const closure = closureReport(top.out, infos);
  if (req.measureTrimming) closure.trimming = await measureTrimming(nix, req, infos);
  if (req.closureBudgetBytes !== undefined && closure.narBytes > req.closureBudgetBytes) {
    const biggest = closure.topOwn
      .slice(0, 5)
      .map((c) => `${storeName(c.path)} ${formatBytes(c.narBytes)}`)
      .join(', ');
    throw new BudgetExceeded(
      `the system closure is ${formatBytes(closure.narBytes)} (${closure.pathCount} paths), over closure-budget ${formatBytes(req.closureBudgetBytes)}; biggest: ${biggest}`,
      closure.leaks.length
        ? `known leaks: ${closure.leaks
            .slice(0, 3)
            .map((l) => `${storeName(l.path)} (${l.option})`)
            .join('; ')}; or raise closure-budget`
        : 'trim the configuration (see the closure report) or raise closure-budget',
    );
  }
  if (req.cache && cache && cache.hit !== 'exact') {
    const roots = [top.out, ...(diskScript ? [diskScript] : [])];
    const paths = infos.map((i) => i.path);
    if (diskScript) {
      const d = await nix.run(['path-info', '-r', diskScript]);
      paths.push(...d.stdout.split('\n').filter(Boolean));
    }
    await exportFileCache(nix, req.cache.dir, roots, [...new Set(paths)]);
    cache.bytes = dirBytes(req.cache.dir);
    if (cache.bytes > req.cache.capBytes) {
      cache.saved = 'skipped-over-cap';
      req.warn(
        `not caching the closure: ${formatBytes(cache.bytes)} is over cache-max-size ${formatBytes(req.cache.capBytes)}`,
      );
    } else {
      cache.saved = await req.cache.store.save(req.cache.dir, cache.key);
    }
  }
  return {
    toplevel: top.out,
    drvPath,
    system,
    diskScript,
    closure,
    cache,
    nixStorePath,
    layout,
    paths: infos,
    seconds: (Date.now() - start) / 1000,
  };
}
