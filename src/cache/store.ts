/** Where build artifacts are kept between runs. The Actions cache in CI; a local dir for the CLI and tests. */
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface CacheStore {
  readonly kind: string;
  /** False when nothing could be restored or saved here (no cache service): skip the cache work. */
  available?(): boolean;
  /** Restores into `dir`; returns the key that matched (exact, or the newest with a restore-key prefix). */
  restore(dir: string, key: string, restoreKeys: string[]): Promise<string | undefined>;
  /** Whether an entry with exactly this key exists (nothing is downloaded). */
  has(dir: string, key: string): Promise<boolean>;
  /** Saves `dir` under `key`; entries are immutable, so saving an existing key does nothing. */
  save(dir: string, key: string): Promise<'saved' | 'exists'>;
  /** Deletes an entry (the previous one of a configuration line); throws when it cannot. */
  remove?(key: string): Promise<void>;
}

/** A directory of entries, one sub-directory per key. */
export class LocalDirCacheStore implements CacheStore {
  readonly kind = 'local';
  constructor(private readonly root: string) {}

  private entry(key: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(key))
      throw new Error(`cache key '${key}' has characters other than A-Z a-z 0-9 . _ -`);
    return join(this.root, key);
  }

  async restore(dir: string, key: string, restoreKeys: string[]): Promise<string | undefined> {
    let hit: string | undefined = existsSync(this.entry(key)) ? key : undefined;
    if (!hit && existsSync(this.root)) {
      for (const prefix of restoreKeys) {
        const candidates = readdirSync(this.root)
          .filter((k) => k.startsWith(prefix) && !k.includes('.partial-'))
          .sort(
            (a, b) => statSync(join(this.root, b)).mtimeMs - statSync(join(this.root, a)).mtimeMs,
          );
        if (candidates[0]) {
          hit = candidates[0];
          break;
        }
      }
    }
    if (!hit) return undefined;
    rmSync(dir, { recursive: true, force: true });
    cpSync(this.entry(hit), dir, { recursive: true });
    return hit;
  }

  async has(_dir: string, key: string): Promise<boolean> {
    return existsSync(this.entry(key));
  }

  async remove(key: string): Promise<void> {
    rmSync(this.entry(key), { recursive: true, force: true });
  }

  async save(dir: string, key: string): Promise<'saved' | 'exists'> {
    const target = this.entry(key);
    if (existsSync(target)) return 'exists';
    mkdirSync(this.root, { recursive: true });
    // Copy then rename, so a crash never leaves a half entry under the real key.
    const tmp = `${target}.partial-${process.pid}`;
    cpSync(dir, tmp, { recursive: true });
    renameSync(tmp, target);
    return 'saved';
  }
}

/** Total bytes of the files under a directory. */
export function dirBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}
