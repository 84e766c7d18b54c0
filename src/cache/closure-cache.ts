/**
 * The closure cache between runs: a zstd file binary cache of the store paths the configured
 * binary caches cannot serve (the user's own derivations), one entry per configuration line.
 * Restored in the build stage, only when the closure is not in the store, and only the paths the
 * store lacks are imported; saved after the deploy, where a failure is a warning.
 */
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { spawnChild } from '../children';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describeError } from '../errors';
import { formatBytes } from '../size';
import { nixErrorText, type Nix } from '../nix/nix';
import { storeName, type PathInfo } from '../nix/closure';
import { dirBytes, type CacheStore } from './store';
import { servedPaths, storeHash, type Substituters } from './narinfo';
import { push } from './push';
import type { PushTarget } from '../inputs';

const MANIFEST = 'vps-nixos-paths.txt';

export interface RestoreOutcome {
  kind: string;
  key: string;
  /**
   * exact: the cache has this closure's entry; in-store: the store has the closure, nothing
   * restored; partial: an older entry of this configuration line; miss: none.
   */
  hit: 'exact' | 'in-store' | 'partial' | 'miss';
  restoredKey?: string;
  /** Paths imported from the entry (only those the store lacked). */
  restoredPaths: number;
}

export interface SaveOutcome {
  key: string;
  saved: 'saved' | 'exists' | 'not-needed' | 'skipped-over-cap' | 'failed';
  /** Why, in one line (what the summary shows). */
  detail: string;
  /** Closure paths, and how many of them the binary caches serve (not saved). */
  closurePaths: number;
  servedPaths: number;
  /** Paths and bytes (zstd NARs) in the entry. */
  savedPaths: number;
  bytes?: number;
  /** The previous entry of this configuration line, deleted once the new one is saved. */
  replaced?: { key: string; deleted: boolean; detail?: string };
}

/**
 * Restores the newest entry of this configuration line. Its paths are not imported here: the
 * entry is a binary cache, and the build uses it as one more substituter (`?trusted=1`: it is
 * ours, unsigned), next to the configured ones that serve the rest, so Nix fetches exactly the
 * paths the store lacks and builds none of them. `missing` is what the store lacked.
 */
export async function restoreClosure(
  nix: Nix,
  cache: { store: CacheStore; dir: string },
  key: string,
  prefix: string,
): Promise<{ outcome: RestoreOutcome; substituter?: string; missing: string[] }> {
  const restoredKey = await cache.store.restore(cache.dir, key, [prefix]);
  const manifest = join(cache.dir, MANIFEST);
  const listed =
    restoredKey && existsSync(manifest)
      ? readFileSync(manifest, 'utf8').split('\n').filter(Boolean)
      : [];
  const missing = await invalidPaths(nix, listed);
  return {
    outcome: {
      kind: cache.store.kind,
      key,
      restoredKey,
      restoredPaths: 0,
      hit: restoredKey === key ? 'exact' : restoredKey ? 'partial' : 'miss',
    },
    substituter: missing.length ? `file://${cache.dir}?trusted=1` : undefined,
    missing,
  };
}

/** After the build: how many of the paths the store lacked it now has (they came from the entry or upstream). */
export async function countRestored(nix: Nix, missing: string[]): Promise<number> {
  return missing.length - (await invalidPaths(nix, missing)).length;
}

/** The paths of `paths` that are not valid in the local store. */
export async function invalidPaths(nix: Nix, paths: string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const r = await nix.run(['path-info', '--json', ...paths]);
  // path-info exits 1 when any is missing, and still lists the valid ones.
  let valid = new Set<string>();
  try {
    const doc = JSON.parse(r.stdout || '[]') as { path?: string; valid?: boolean }[];
    valid = new Set(doc.filter((d) => d.valid !== false && d.path).map((d) => d.path!));
  } catch {
    // nothing listed: treat all as missing
  }
  return paths.filter((p) => !valid.has(p));
}

export interface SaveRequest {
  /** The Actions (or a local) cache, or the user's own binary cache (push-to). */
  to:
    | { kind: 'cache'; store: CacheStore; dir: string; capBytes: number }
    | { kind: 'push'; target: PushTarget };
  key: string;
  /** The restore's outcome in this run: an exact hit needs no save; a partial one is replaced. */
  restore?: RestoreOutcome;
  /** The closure (toplevel, disk script) with sizes, as the build reported it. */
  paths: PathInfo[];
  substituters: Substituters;
  log: (line: string) => void;
  warn: (line: string) => void;
}

/**
 * Saves the paths the binary caches cannot serve. Never throws: a refused or failed save (a
 * read-only token, the quota) is a warning and the outcome says so.
 */
export async function saveClosure(nix: Nix, req: SaveRequest): Promise<SaveOutcome> {
  const base = {
    key: req.key,
    closurePaths: req.paths.length,
    servedPaths: 0,
    savedPaths: 0,
  };
  const to = req.to;
  if (to.kind === 'cache' && req.restore?.hit === 'exact')
    return { ...base, saved: 'exists', detail: 'the cache has this closure already' };
  try {
    if (to.kind === 'cache' && (await to.store.has(to.dir, req.key)))
      return { ...base, saved: 'exists', detail: 'the cache has this closure already' };
    const served = await servedPaths(
      req.paths.map((p) => p.path),
      req.substituters,
      { warn: req.warn },
    );
    const rest = req.paths.filter((p) => !served.has(p.path));
    const outcome = { ...base, servedPaths: served.size, savedPaths: rest.length };
    if (rest.length === 0)
      return {
        ...outcome,
        saved: 'not-needed',
        detail: `the binary caches serve all ${req.paths.length} paths`,
      };
    if (to.kind === 'push') {
      const r = await push(
        to.target,
        rest.map((p) => p.path),
        req.log,
      );
      if (r.code !== 0) throw new Error(`${to.target.tool} push exited ${r.code}: ${r.tail}`);
      const detail = `${rest.length} of ${req.paths.length} paths pushed to ${to.target.tool}:${to.target.cache} (the rest the binary caches serve)`;
      req.log(`cache: ${detail}`);
      return { ...outcome, saved: 'saved', detail };
    }
    await writeEntry(nix, to.dir, rest);
    const bytes = dirBytes(to.dir);
    if (bytes > to.capBytes) {
      const biggest = [...rest]
        .sort((a, b) => b.narBytes - a.narBytes)
        .slice(0, 3)
        .map((p) => `${storeName(p.path)} ${formatBytes(p.narBytes)}`)
        .join(', ');
      const detail = `${rest.length} paths the binary caches do not serve, ${formatBytes(bytes)} compressed, over cache-max-size ${formatBytes(to.capBytes)} (biggest: ${biggest}): not saved`;
      req.warn(`cache: ${detail}`);
      return { ...outcome, saved: 'skipped-over-cap', bytes, detail };
    }
    const saved = await to.store.save(to.dir, req.key);
    const done: SaveOutcome = {
      ...outcome,
      saved,
      bytes,
      detail: `${rest.length} of ${req.paths.length} paths (the rest the binary caches serve), ${formatBytes(bytes)}`,
    };
    const old = req.restore?.restoredKey;
    if (saved === 'saved' && old && old !== req.key && to.store.remove) {
      const gone: NonNullable<SaveOutcome['replaced']> = await to.store.remove(old).then(
        () => ({ key: old, deleted: true }),
        (err: unknown) => ({ key: old, deleted: false, detail: describeError(err) }),
      );
      if (!gone.deleted)
        req.warn(
          `cache: the previous entry ${old} stays until the cache evicts it: ${gone.detail}`,
        );
      done.replaced = gone;
    }
    req.log(`cache: ${saved} ${req.key}: ${done.detail}`);
    return done;
  } catch (err) {
    const detail = describeError(err).split('\n')[0] ?? 'failed';
    req.warn(`cache: not saved (${detail}); the deploy is not affected`);
    return { ...base, saved: 'failed', detail };
  }
}

/** The runner's binary caches and trusted keys (`nix config show`, `nix show-config` before 2.20). */
export async function runnerSubstituters(nix: Nix): Promise<Substituters> {
  for (const args of [
    ['config', 'show', '--json'],
    ['show-config', '--json'],
  ]) {
    const r = await nix.run(args);
    if (r.code !== 0) continue;
    try {
      const doc = JSON.parse(r.stdout) as Record<string, { value?: unknown }>;
      const list = (k: string) => {
        const v = doc[k]?.value;
        return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
      };
      return { urls: list('substituters'), trustedKeys: list('trusted-public-keys') };
    } catch {
      // not JSON: try the other spelling
    }
  }
  return { urls: [], trustedKeys: [] };
}

const NIX_BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** Nix's base-32 (its own alphabet and bit order), as store paths and narinfo hashes use it. Pure. */
export function nixBase32(bytes: Uint8Array): string {
  const len = Math.ceil((bytes.length * 8) / 5);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    const c = ((bytes[i] ?? 0) >> j) | ((bytes[i + 1] ?? 0) << (8 - j));
    out += NIX_BASE32[c & 0x1f];
  }
  return out;
}

/** `sha256-<base64>` (SRI, as path-info --json prints it) or `sha256:<base32>` → `sha256:<base32>`. Pure. */
export function nixHash(h: string): string {
  const sri = /^sha256-([A-Za-z0-9+/]+=*)$/.exec(h);
  return sri ? `sha256:${nixBase32(Buffer.from(sri[1]!, 'base64'))}` : h;
}

/** A narinfo as Nix reads it. Pure. */
export function narinfoText(n: {
  path: string;
  fileHash: string;
  fileSize: number;
  narHash: string;
  narSize: number;
  references: string[];
}): string {
  return [
    `StorePath: ${n.path}`,
    `URL: nar/${n.fileHash}.nar.zst`,
    'Compression: zstd',
    `FileHash: sha256:${n.fileHash}`,
    `FileSize: ${n.fileSize}`,
    `NarHash: ${n.narHash}`,
    `NarSize: ${n.narSize}`,
    `References: ${n.references.map((r) => r.slice(r.lastIndexOf('/') + 1)).join(' ')}`,
    '',
  ].join('\n');
}

/**
 * Writes `paths` (and only them: their references may live in other caches) as a zstd file
 * binary cache in `dir`: nar/<filehash>.nar.zst and <hash>.narinfo each, nix-cache-info, and the
 * manifest. `nix copy --no-recursive` cannot: a file cache refuses a path whose references it lacks.
 */
export async function writeEntry(nix: Nix, dir: string, paths: PathInfo[]): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'nar'), { recursive: true });
  writeFileSync(
    join(dir, 'nix-cache-info'),
    'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n',
  );
  const hashes = await nix.run(['path-info', '--json', ...paths.map((p) => p.path)]);
  const narHash = new Map<string, string>();
  try {
    for (const d of JSON.parse(hashes.stdout) as { path: string; narHash?: string }[])
      if (d.narHash) narHash.set(d.path, nixHash(d.narHash));
  } catch {
    throw new Error(`nix path-info did not list the NAR hashes: ${nixErrorText(hashes.stderr)}`);
  }
  for (const p of paths) {
    const tmp = join(dir, 'nar', 'partial.nar.zst');
    const digest = await dumpCompressed(p.path, tmp);
    const fileHash = nixBase32(digest.sha256);
    renameSync(tmp, join(dir, 'nar', `${fileHash}.nar.zst`));
    const nh = narHash.get(p.path);
    if (!nh) throw new Error(`no NAR hash for ${p.path}`);
    writeFileSync(
      join(dir, `${storeHash(p.path)}.narinfo`),
      narinfoText({
        path: p.path,
        fileHash,
        fileSize: digest.bytes,
        narHash: nh,
        narSize: p.narBytes,
        references: p.references,
      }),
    );
  }
  writeFileSync(join(dir, MANIFEST), paths.map((p) => p.path).join('\n') + '\n');
}

/** `nix-store --dump PATH | zstd -3` into `out`; the compressed file's sha256 and size. */
function dumpCompressed(path: string, out: string): Promise<{ sha256: Buffer; bytes: number }> {
  return new Promise((resolve, reject) => {
    const dump = spawnChild('nix-store', ['--dump', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const zstd = spawnChild('zstd', ['-q', '-3', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    const file = createWriteStream(out);
    let bytes = 0;
    let err = '';
    dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
    zstd.stderr.on('data', (d: Buffer) => (err += d.toString()));
    dump.stdout.pipe(zstd.stdin);
    zstd.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    zstd.stdout.pipe(file);
    const fail = (e: Error) => reject(new Error(`writing the NAR of ${path}: ${e.message}`));
    dump.on('error', fail);
    zstd.on('error', (e: NodeJS.ErrnoException) =>
      fail(e.code === 'ENOENT' ? new Error('zstd is not installed on the runner') : e),
    );
    let dumped: number | null = null;
    dump.on('close', (c) => (dumped = c));
    file.on('finish', () =>
      dumped === 0 || dumped === null
        ? resolve({ sha256: hash.digest(), bytes })
        : reject(new Error(`nix-store --dump ${path} exited ${dumped}: ${err.trim()}`)),
    );
    zstd.on('close', (c) => {
      if (c !== 0) reject(new Error(`zstd exited ${c}: ${err.trim()}`));
    });
  });
}
