/** The build stage: the user's system closure and disk script, reported, budgeted and cached. */
import type { FlakeRef } from '../inputs';
import { VpsNixosError, describeError } from '../errors';
import { formatBytes } from '../size';
import { cacheKey, cacheKeyPrefix } from '../cache/keys';
import type { CacheStore } from '../cache/store';
import { countRestored, restoreClosure, type RestoreOutcome } from '../cache/closure-cache';
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

/**
 * disko's disk script (destroy, format, mount), by its current name first: disko 1.x calls it
 * destroyFormatMount(NoDeps) and keeps diskoScript(NoDeps) as the legacy name until 2.0.
 */
export const DISKO_SCRIPT_ATTRS = {
  noDeps: ['destroyFormatMountNoDeps', 'diskoScriptNoDeps'],
  withDeps: ['destroyFormatMount', 'diskoScript'],
} as const;

const isMissingAttr = (stderr: string): boolean =>
  /does not provide attribute|attribute '.*' missing/.test(stderr);

/** The closure is larger than the budget; raised before anything touches the target. */
export class BudgetExceeded extends VpsNixosError {}

export interface BuildRequest {
  flake: FlakeRef;
  /**
   * Build disko's disk script: with its tools (`withDeps`) or without (the installer has them);
   * `required` when the plan partitions the disk (else a missing one is fine).
   */
  diskScript?: { withDeps: boolean; required: boolean };
  closureBudgetBytes?: number;
  /** Also build the configuration without the vpsNixos module and report what it saves. */
  measureTrimming?: boolean;
  /** Evaluate the disko layout (the installer's tools, the disks it formats): when the run may install. */
  layout?: boolean;
  /** Restore the closure cache when the store lacks the closure (saving comes after the deploy). */
  cache?: { store: CacheStore; dir: string };
  /** The toplevel's evaluation, when the run already did it (it is not repeated). */
  evaluated?: Evaluated;
  /** `nix --version`, when the run already asked (the installable that builds a .drv depends on it). */
  nixVersion?: string;
  toolVersion: string;
  log: (line: string) => void;
  warn: (line: string) => void;
}

export interface BuildResult {
  toplevel: string;
  drvPath: string;
  system: string;
  diskScript?: string;
  closure: ClosureReport;
  cache?: RestoreOutcome;
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
  if (isMissingAttr(stderr)) {
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
  extra: string[] = [],
): Promise<{ out: string; stderr: string; code: number }> {
  const r = await nix.run(['build', '--no-link', '--json', ...extra, installable], {
    onStderr: (l) => l.trim() && log(l),
  });
  if (r.code !== 0) return { out: '', stderr: r.stderr, code: r.code };
  const doc = JSON.parse(r.stdout) as { outputs: Record<string, string> }[];
  return { out: doc[0]?.outputs.out ?? '', stderr: r.stderr, code: 0 };
}

/**
 * The installable that builds a derivation's `out`: `DRV^out` since Nix 2.15, where a bare .drv
 * path names the derivation file itself (NixOS/nix#7600); the bare path before, which builds its
 * outputs (Nix 2.8 on the test machines). An unreadable version is taken for a recent Nix.
 */
export function drvOutInstallable(drvPath: string, version: string): string {
  const last = [...version.matchAll(/(\d+)\.(\d+)(?:\.\d+)?/g)].at(-1);
  if (!last) return `${drvPath}^out`;
  const [major, minor] = [Number(last[1]), Number(last[2])];
  return major > 2 || (major === 2 && minor >= 15) ? `${drvPath}^out` : drvPath;
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
  const version = req.nixVersion ?? (await nixVersion(nix));
  if (!req.evaluated) req.log(`nix: ${version}`);
  const { drvPath, outPath, system } = req.evaluated ?? (await evalToplevel(nix, req.flake));
  let cache: RestoreOutcome | undefined;
  let restored: { substituter?: string; missing: string[] } = { missing: [] };
  // Already in the runner's store (built by an earlier step or run, or restored): `nix build`
  // would only evaluate the configuration again, a whole NixOS evaluation for nothing.
  const valid = await isValid(nix, outPath);
  if (req.cache) {
    const parts = { system, name: req.flake.name, drvPath, toolVersion: req.toolVersion };
    const key = cacheKey(parts);
    const none: RestoreOutcome = {
      kind: req.cache.store.kind,
      key,
      hit: 'in-store',
      restoredPaths: 0,
    };
    if (valid) cache = none;
    else {
      // A cache that fails only costs the time to build: a warning, never a failed run.
      const r = await restoreClosure(nix, req.cache, key, cacheKeyPrefix(parts)).catch(
        (err: unknown) => {
          req.warn(`cache: restore failed, building without it: ${describeError(err)}`);
          return { outcome: { ...none, hit: 'miss' as const }, missing: [] };
        },
      );
      cache = r.outcome;
      restored = r;
    }
  }
  const extra = restored.substituter ? ['--extra-substituters', restored.substituter] : [];
  // Built from the evaluation's derivation: `nix build` of the flake attribute would evaluate the
  // whole configuration again. The attribute only when this Nix read the installable otherwise.
  let top = { out: outPath, stderr: '', code: 0 };
  if (valid) req.log(`${outPath} is in the store already: nothing to build`);
  else {
    const installable = drvOutInstallable(drvPath, version);
    top = await buildOut(nix, installable, req.log, extra);
    const misread =
      (top.code === 0 && top.out !== outPath) ||
      (top.code !== 0 && installable.endsWith('^out') && top.stderr.includes(installable));
    if (misread) {
      req.log(
        `building ${installable} did not give ${outPath} (${top.code === 0 ? top.out : nixErrorText(top.stderr)}): building the flake attribute instead`,
      );
      top = await buildOut(nix, attr(req.flake, 'config.system.build.toplevel'), req.log, extra);
    }
  }
  if (cache && restored.missing.length) {
    cache = { ...cache, restoredPaths: await countRestored(nix, restored.missing) };
  }
  if (cache)
    req.log(
      `cache ${cache.hit}${cache.restoredKey ? ` (${cache.restoredKey}: ${cache.restoredPaths} of the paths the store lacked came from it or the binary caches)` : ''}`,
    );
  if (top.code !== 0)
    throw new BuildError(
      `building the system failed: ${nixErrorText(top.stderr)}`,
      'run nix build on the same attribute locally to see the whole log',
    );
  let diskScript: string | undefined;
  if (req.diskScript) {
    const names = DISKO_SCRIPT_ATTRS[req.diskScript.withDeps ? 'withDeps' : 'noDeps'];
    let d = { out: '', stderr: '', code: 1 };
    for (const name of names) {
      d = await buildOut(nix, attr(req.flake, `config.system.build.${name}`), req.log, extra);
      if (d.code === 0 || !isMissingAttr(d.stderr)) break;
    }
    if (d.code !== 0) {
      const missing = isMissingAttr(d.stderr);
      if (missing && !req.diskScript.required) {
        req.log('no disko configuration: no disk script built (only the kexec method needs one)');
      } else if (missing) {
        throw new BuildError(
          `nixosConfigurations.${req.flake.name} has no disko configuration (config.system.build.${names.join(' and ')} are missing), but the plan partitions the disk`,
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
