import * as cache from '@actions/cache';
import { cacheServiceAvailable } from '../../src/cache/actions';

// The action loads @actions/cache only when it reads or writes an entry; whether the service is
// there is answered without it, and must be what the package itself would answer.
describe('cacheServiceAvailable', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });
  const vars = ['ACTIONS_CACHE_URL', 'ACTIONS_RESULTS_URL', 'ACTIONS_CACHE_SERVICE_V2'] as const;
  const cases = Array.from({ length: 2 ** vars.length * 2 }, (_, n) => n);
  it.each(cases)('agrees with cache.isFeatureAvailable() (case %i)', (n) => {
    for (const [i, v] of vars.entries()) {
      if (n & (1 << i)) process.env[v] = 'https://example.invalid/';
      else delete process.env[v];
    }
    // GHES: a server URL that is not github.com turns the v2 service off.
    process.env.GITHUB_SERVER_URL = n & 8 ? 'https://ghes.example.com' : 'https://github.com';
    expect(cacheServiceAvailable(process.env)).toBe(cache.isFeatureAvailable());
  });
});
