/** Health checks after a switch: a command on the target, a URL from the runner. Retried until a deadline. */
import { shellQuote } from '../shell';
import type { RemoteSession } from '../ssh/session';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  seconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Tries `once` until it passes or `timeoutMs` is over; reports the last attempt. */
async function retry(
  name: string,
  timeoutMs: number,
  pollMs: number,
  once: () => Promise<{ ok: boolean; detail: string }>,
): Promise<CheckResult> {
  const start = Date.now();
  let tries = 0;
  for (;;) {
    tries++;
    const r = await once();
    const seconds = (Date.now() - start) / 1000;
    if (r.ok || Date.now() + pollMs > start + timeoutMs) {
      return {
        name,
        ok: r.ok,
        detail: `${r.detail} (${tries} ${tries === 1 ? 'try' : 'tries'})`,
        seconds,
      };
    }
    await sleep(pollMs);
  }
}

const tail = (s: string, n = 300) => {
  const t = s.trim().replace(/\s+/g, ' ');
  return t.length > n ? '…' + t.slice(-n) : t;
};

/** `health-check`: run by the target's shell; exit 0 means healthy. */
export function commandCheck(
  session: RemoteSession,
  sudo: string,
  command: string,
  timeoutMs: number,
  pollMs = 3000,
): Promise<CheckResult> {
  return retry(`health-check: ${command}`, timeoutMs, pollMs, async () => {
    try {
      const r = await session.exec(`${sudo}sh -c ${shellQuote(command)}`, {
        timeoutMs: Math.max(5000, Math.min(timeoutMs, 120_000)),
      });
      return {
        ok: r.code === 0,
        detail: `exit ${r.code}${tail(r.stdout + r.stderr) ? `: ${tail(r.stdout + r.stderr)}` : ''}`,
      };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  });
}

/** `health-url`: fetched from the runner; any 2xx or 3xx status means healthy. */
export function urlCheck(url: string, timeoutMs: number, pollMs = 3000): Promise<CheckResult> {
  return retry(`health-url: ${url}`, timeoutMs, pollMs, async () => {
    try {
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
      await res.body?.cancel();
      return { ok: res.status >= 200 && res.status < 400, detail: `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      return { ok: false, detail: e.cause?.code ?? e.cause?.message ?? e.message };
    }
  });
}
