/**
 * Which store paths the binary caches already serve: one `<hash>.narinfo` look-up per path and
 * cache (a file for file://, a GET for http(s)://), counted as served only when it is signed by a
 * key the runner trusts. What they serve need not be saved anywhere else.
 */
import { readFile } from 'node:fs/promises';

/** A binary cache and the keys its narinfos must be signed with (empty: any signature is fine). */
export interface Substituters {
  urls: string[];
  trustedKeys: string[];
}

/** The store hash of a path: `/nix/store/<hash>-<name>` → `<hash>`. */
export function storeHash(path: string): string | undefined {
  return /^\/nix\/store\/([0-9a-z]{32})-/.exec(path)?.[1];
}

/** Whether a narinfo is for `path` and signed by one of `trusted` (by key name). Pure. */
export function narinfoServes(text: string, path: string, trusted: string[]): boolean {
  const fields = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(': ');
    if (i <= 0) continue;
    const k = line.slice(0, i);
    fields.set(k, [...(fields.get(k) ?? []), line.slice(i + 2).trim()]);
  }
  if (fields.get('StorePath')?.[0] !== path) return false;
  const names = trusted.map((k) => k.split(':')[0]);
  const sigs = fields.get('Sig') ?? [];
  return sigs.some((s) => names.length === 0 || names.includes(s.split(':')[0] ?? ''));
}

/** The text of `<cache>/<hash>.narinfo`, or undefined when the cache does not have it. */
async function fetchNarinfo(
  url: string,
  hash: string,
  timeoutMs: number,
): Promise<string | undefined> {
  const base = url.replace(/\/+$/, '');
  if (base.startsWith('file://')) {
    const dir = decodeURIComponent(base.slice('file://'.length).split('?')[0] ?? '');
    return readFile(`${dir}/${hash}.narinfo`, 'utf8').catch(() => undefined);
  }
  if (!/^https?:\/\//.test(base)) return undefined; // s3:// and others: not asked, so not served
  const r = await fetch(`${base}/${hash}.narinfo`, { signal: AbortSignal.timeout(timeoutMs) });
  return r.ok ? r.text() : undefined;
}

/**
 * The paths some cache serves. A cache that does not answer (network, timeout) counts as not
 * serving: the path is then saved, which costs space, never correctness.
 */
export async function servedPaths(
  paths: string[],
  subs: Substituters,
  opts: { concurrency?: number; timeoutMs?: number; warn?: (line: string) => void } = {},
): Promise<Set<string>> {
  const served = new Set<string>();
  const failing = new Set<string>();
  const queue = paths.filter((p) => storeHash(p));
  const worker = async () => {
    for (let p = queue.shift(); p !== undefined; p = queue.shift()) {
      for (const url of subs.urls) {
        if (failing.has(url)) continue;
        try {
          const text = await fetchNarinfo(url, storeHash(p)!, opts.timeoutMs ?? 10_000);
          if (text !== undefined && narinfoServes(text, p, subs.trustedKeys)) {
            served.add(p);
            break;
          }
        } catch (err) {
          failing.add(url);
          opts.warn?.(
            `binary cache ${url} did not answer (${(err as Error).message}): not asked again`,
          );
        }
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker));
  return served;
}
