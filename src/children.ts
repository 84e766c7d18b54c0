/**
 * The child processes this run has alive (nix, nixos-rebuild, tar, zstd, cachix), so that a
 * signal that ends the run ends them too: a signal skips `finally`, and a `kill` of our pid alone
 * (a cancelled job, a supervisor) would leave a nixos-rebuild switching with no one to confirm it.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const alive = new Set<ChildProcess>();

function track<C extends ChildProcess>(child: C): C {
  alive.add(child);
  const gone = () => alive.delete(child);
  child.once('exit', gone);
  child.once('error', gone);
  return child;
}

/** `spawn`, the child tracked until it exits or fails to start. */
export const spawnChild = ((...args: Parameters<typeof spawn>) =>
  track(spawn(...args))) as typeof spawn;

/** Sends `signal` to every child still alive; returns how many it reached. */
export function stopChildren(signal: NodeJS.Signals = 'SIGTERM'): number {
  let n = 0;
  for (const child of alive) {
    try {
      if (child.kill(signal)) n++;
    } catch {
      // already gone
    }
  }
  return n;
}

/** How many children are alive now (tests). */
export function childrenAlive(): number {
  return alive.size;
}
