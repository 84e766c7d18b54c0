import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import {
  narinfoText,
  nixBase32,
  nixHash,
  saveClosure,
  type SaveRequest,
} from '../../src/cache/closure-cache';
import { narinfoServes, servedPaths, storeHash } from '../../src/cache/narinfo';
import { cacheKey, cacheKeyPrefix } from '../../src/cache/keys';
import type { CacheStore } from '../../src/cache/store';
import type { Nix } from '../../src/nix/nix';
import { pushCommand } from '../../src/cache/push';

const P = (h: string, name: string) => `/nix/store/${h.repeat(32).slice(0, 32)}-${name}`;
const A = P('a', 'hello-2.12');
const B = P('b', 'my-app-1.0');
const C = P('c', 'nixos-system-vps');

describe("Nix's hashes", () => {
  it('base-32 as nix hash to-base32 prints it', () => {
    const abc = createHash('sha256').update('abc').digest();
    expect(nixBase32(abc)).toBe('1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s');
    expect(nixHash('sha256-PDuBSxHsaRWCK4T7FGxtfo/hFg7HX3pylFc720RKAkY=')).toBe(
      'sha256:0ih2992dnfspjir7lpy71qbf33vydmn19yw45f11asgc255q2frw',
    );
  });
  it('writes a narinfo with base names as references', () => {
    expect(
      narinfoText({
        path: B,
        fileHash: 'x'.repeat(52),
        fileSize: 10,
        narHash: 'sha256:y',
        narSize: 20,
        references: [A, B],
      }),
    ).toContain(`References: ${A.slice(11)} ${B.slice(11)}\n`);
  });
});

describe('which paths the binary caches serve', () => {
  const signed = (path: string, key: string) =>
    `StorePath: ${path}\nURL: nar/x.nar.xz\nNarHash: sha256:x\nNarSize: 1\nSig: ${key}:c2ln\n`;
  it('counts a narinfo only for the same path and a trusted key', () => {
    expect(narinfoServes(signed(A, 'cache.nixos.org-1'), A, ['cache.nixos.org-1:AAAA'])).toBe(true);
    expect(narinfoServes(signed(A, 'evil-1'), A, ['cache.nixos.org-1:AAAA'])).toBe(false);
    expect(narinfoServes(signed(B, 'cache.nixos.org-1'), A, ['cache.nixos.org-1:AAAA'])).toBe(
      false,
    );
    expect(narinfoServes(`StorePath: ${A}\n`, A, [])).toBe(false); // unsigned
  });
  it('asks a file:// cache by hash, and a cache that does not exist serves nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'narinfo-'));
    writeFileSync(join(dir, `${storeHash(A)}.narinfo`), signed(A, 'up-1'));
    const got = await servedPaths([A, B], { urls: [`file://${dir}`], trustedKeys: ['up-1:K'] });
    expect([...got]).toEqual([A]);
    expect((await servedPaths([A], { urls: ['file:///nonexistent'], trustedKeys: [] })).size).toBe(
      0,
    );
  });
});

describe('cache keys', () => {
  const parts = {
    system: 'x86_64-linux',
    name: 'my-vps',
    drvPath: `/nix/store/${'d'.repeat(32)}-nixos-system-my-vps.drv`,
    toolVersion: '0.1.0',
  };
  it('one line per configuration: the prefix is the restore key, the derivation makes the entry', () => {
    expect(cacheKey(parts).startsWith(cacheKeyPrefix(parts))).toBe(true);
    expect(cacheKey(parts)).not.toBe(
      cacheKey({ ...parts, drvPath: parts.drvPath.replace(/d/g, 'e') }),
    );
    expect(cacheKeyPrefix({ ...parts, name: 'other' })).not.toBe(cacheKeyPrefix(parts));
    expect(cacheKey(parts)).not.toMatch(/,/);
  });
});

/** A store that records what it was asked, and can refuse. */
function store(opts: { has?: boolean; refuse?: boolean } = {}) {
  const calls: string[] = [];
  const s: CacheStore = {
    kind: 'test',
    restore: async () => undefined,
    has: async () => {
      calls.push('has');
      return !!opts.has;
    },
    save: async () => {
      calls.push('save');
      if (opts.refuse) throw new Error('Cache service responded with 403');
      return 'saved';
    },
    remove: async (key) => {
      calls.push(`remove ${key}`);
    },
  };
  return { s, calls };
}

describe('the save after the deploy', () => {
  const upstream = mkdtempSync(join(tmpdir(), 'upstream-'));
  for (const p of [A, C])
    writeFileSync(
      join(upstream, `${storeHash(p)}.narinfo`),
      `StorePath: ${p}\nURL: nar/x\nNarHash: sha256:x\nNarSize: 1\nSig: up-1:c2ln\n`,
    );
  const paths = [A, B, C].map((path) => ({ path, narBytes: 100, references: [] }));
  const nixCalls: string[][] = [];
  const nix: Nix = {
    run: async (args) => {
      nixCalls.push(args);
      return { code: 1, stdout: '', stderr: 'error: no nix in this test' };
    },
  };
  const req = (s: CacheStore, over: Partial<SaveRequest> = {}): SaveRequest => ({
    to: { kind: 'cache', store: s, dir: mkdtempSync(join(tmpdir(), 'entry-')), capBytes: 1 << 30 },
    key: 'k2',
    paths,
    substituters: { urls: [`file://${upstream}`], trustedKeys: ['up-1:K'] },
    log: () => undefined,
    warn: (l) => warnings.push(l),
    ...over,
  });
  const warnings: string[] = [];
  beforeEach(() => {
    warnings.length = 0;
    nixCalls.length = 0;
  });

  it('an exact hit or an existing entry needs no work', async () => {
    const { s, calls } = store({ has: true });
    const hit = { kind: 'test', key: 'k2', hit: 'exact' as const, restoredPaths: 0 };
    expect((await saveClosure(nix, req(s, { restore: hit }))).saved).toBe('exists');
    expect(calls).toEqual([]);
    expect((await saveClosure(nix, req(s))).saved).toBe('exists');
    expect(calls).toEqual(['has']);
    expect(nixCalls).toEqual([]);
  });

  it('nothing to save when the binary caches serve every path', async () => {
    const { s, calls } = store();
    const r = await saveClosure(nix, req(s, { paths: paths.filter((p) => p.path !== B) }));
    expect(r).toMatchObject({ saved: 'not-needed', servedPaths: 2, savedPaths: 0 });
    expect(calls).toEqual(['has']);
  });

  it('a failure is a warning and an outcome, never a throw', async () => {
    const { s } = store();
    // the fake Nix cannot write the entry: the save fails, the run goes on
    const r = await saveClosure(nix, req(s));
    expect(r).toMatchObject({ saved: 'failed', servedPaths: 0 });
    expect(warnings.join('\n')).toMatch(/cache: not saved .*the deploy is not affected/);
  });

  it('push-to sends only what the binary caches do not serve, by the tool’s own CLI', () => {
    expect(pushCommand({ tool: 'cachix', cache: 'mine' }, [B])).toEqual([
      'cachix',
      ['push', 'mine', B],
    ]);
    expect(pushCommand({ tool: 'attic', cache: 'srv:mine' }, [B])).toEqual([
      'attic',
      ['push', 'srv:mine', B],
    ]);
  });
});
