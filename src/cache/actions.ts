/** The GitHub Actions cache behind the CacheStore interface: the only code that needs the cache service. */
import * as cache from '@actions/cache';
import type { CacheStore } from './store';

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
    return cache.isFeatureAvailable();
  }

  async restore(dir: string, key: string, restoreKeys: string[]): Promise<string | undefined> {
    if (!cache.isFeatureAvailable()) return undefined;
    return cache.restoreCache([dir], key, restoreKeys);
  }

  async has(dir: string, key: string): Promise<boolean> {
    if (!cache.isFeatureAvailable()) return false;
    return (await cache.restoreCache([dir], key, [], { lookupOnly: true })) === key;
  }

  async save(dir: string, key: string): Promise<'saved' | 'exists'> {
    if (!cache.isFeatureAvailable()) return 'exists';
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
