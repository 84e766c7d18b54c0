/**
 * The GitHub Actions cache behind the CacheStore interface: the only code that needs the cache
 * service. @actions/cache brings Azure's storage client and Apache Arrow (3.6 of the bundle's
 * 6.2 MB; evaluating them is most of the action's start): it is loaded when a cache entry is read
 * or written, not on a deploy that needs none. Its own availability rule (service v1 or v2, GHES)
 * is small and read without it.
 */
import { getCacheServiceVersion } from '@actions/cache/lib/internal/config';
import type { CacheStore } from './store';

type CacheModule = typeof import('@actions/cache');
let loaded: Promise<CacheModule> | undefined;
const lib = (): Promise<CacheModule> => (loaded ??= import('@actions/cache'));

/** What `cache.isFeatureAvailable()` answers, without loading the package (a test keeps them equal). */
export function cacheServiceAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return getCacheServiceVersion() === 'v2' ? !!env.ACTIONS_RESULTS_URL : !!env.ACTIONS_CACHE_URL;
}

export class ActionsCacheStore implements CacheStore {
  readonly kind = 'actions';

  /** `token` (the github-token input) lets remove() delete entries; it needs actions: write. */
  constructor(
    private readonly token?: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Deletes an entry by key through the REST API (the cache package has no delete). */
  async remove(key: string): Promise<void> {
    const repo = this.env.GITHUB_REPOSITORY;
    if (!this.token || !repo)
      throw new Error('no github-token (and GITHUB_REPOSITORY) to delete cache entries with');
    const api = this.env.GITHUB_API_URL || 'https://api.github.com';
    const r = await fetch(`${api}/repos/${repo}/actions/caches?key=${encodeURIComponent(key)}`, {
      method: 'DELETE',
      headers: {
        authorization: `Bearer ${this.token}`,
        accept: 'application/vnd.github+json',
        'x-github-api-version': '2022-11-28',
      },
      signal: AbortSignal.timeout(30_000),
    });
    if (!r.ok && r.status !== 404)
      throw new Error(
        `DELETE actions/caches answered ${r.status}${r.status === 403 ? ' (the token needs permissions: actions: write)' : ''}`,
      );
  }

  available(): boolean {
    return cacheServiceAvailable(this.env);
  }

  async restore(dir: string, key: string, restoreKeys: string[]): Promise<string | undefined> {
    if (!this.available()) return undefined;
    return (await lib()).restoreCache([dir], key, restoreKeys);
  }

  async has(dir: string, key: string): Promise<boolean> {
    if (!this.available()) return false;
    return (await (await lib()).restoreCache([dir], key, [], { lookupOnly: true })) === key;
  }

  async save(dir: string, key: string): Promise<'saved' | 'exists'> {
    if (!this.available()) return 'exists';
    const cache = await lib();
    try {
      await cache.saveCache([dir], key);
      return 'saved';
    } catch (err) {
      // Entries are immutable: another run saved this key first.
      if (err instanceof cache.ReserveCacheError) return 'exists';
      throw err;
    }
  }
}
