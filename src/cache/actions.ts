/** The GitHub Actions cache behind the CacheStore interface: the only code that needs the cache service. */
import * as cache from '@actions/cache';
import type { CacheStore } from './store';

export class ActionsCacheStore implements CacheStore {
  readonly kind = 'actions';

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
