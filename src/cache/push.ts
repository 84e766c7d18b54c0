/**
 * push-to: the paths the binary caches do not serve, pushed to the user's own binary cache by its
 * CLI on the runner (logged in beforehand: CACHIX_AUTH_TOKEN, `attic login`), instead of the
 * Actions cache.
 */
import { spawnChild } from '../children';
import type { PushTarget } from '../inputs';

/** The command line: `cachix push NAME PATH…` or `attic push CACHE PATH…`. Pure. */
export function pushCommand(to: PushTarget, paths: string[]): [string, string[]] {
  return [to.tool, ['push', to.cache, ...paths]];
}

/** Runs the push; resolves with its exit status and the last lines of its output. */
export function push(
  to: PushTarget,
  paths: string[],
  log: (line: string) => void,
  timeoutMs = 3600_000,
): Promise<{ code: number; tail: string }> {
  const [cmd, args] = pushCommand(to, paths);
  return new Promise((resolve) => {
    const kept: string[] = [];
    const child = spawnChild(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    const take = (d: Buffer) => {
      for (const l of d.toString().split('\n').filter(Boolean)) {
        log(`${cmd}: ${l}`);
        kept.push(l);
        if (kept.length > 20) kept.shift();
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({
        code: 127,
        tail:
          err.code === 'ENOENT'
            ? `${cmd} is not on PATH: install it before this step (e.g. cachix/cachix-action, or attic's client)`
            : err.message,
      });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, tail: kept.slice(-5).join('\n') });
    });
  });
}
