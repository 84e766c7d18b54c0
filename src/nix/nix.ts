/** The runner's Nix, run as a child process with the settings we need passed on the command line. */
import { spawnChild } from '../children';
import { VpsNixosError } from '../errors';

export interface NixResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NixRunOptions {
  /** Stream stderr lines (build logs) as they come. */
  onStderr?: (line: string) => void;
  timeoutMs?: number;
  /** Ends the child (SIGTERM) when aborted: work started ahead that turned out not needed. */
  signal?: AbortSignal;
}

/** Anything that runs `nix …`; one real implementation, tests may wrap it to count calls. */
export interface Nix {
  run(args: string[], opts?: NixRunOptions): Promise<NixResult>;
}

/** Nix is missing or failed in a way the user must fix on the runner. */
export class NixError extends VpsNixosError {}

// The user's nix.conf need not enable these; we pass them on every call.
const FEATURES = ['--extra-experimental-features', 'nix-command flakes'];

/** Runs the `nix` found on PATH (or `bin`). */
export function localNix(bin = 'nix'): Nix {
  return {
    run(args, opts = {}) {
      return new Promise((resolve, reject) => {
        const child = spawnChild(bin, [...FEATURES, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        let partial = '';
        const timer = opts.timeoutMs
          ? setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs)
          : undefined;
        const abort = () => child.kill('SIGTERM');
        if (opts.signal?.aborted) abort();
        else opts.signal?.addEventListener('abort', abort, { once: true });
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => {
          const s = d.toString();
          stderr += s;
          if (!opts.onStderr) return;
          const lines = (partial + s).split('\n');
          partial = lines.pop() ?? '';
          lines.forEach((l) => opts.onStderr?.(l));
        });
        child.on('error', (err: NodeJS.ErrnoException) => {
          if (timer) clearTimeout(timer);
          if (err.code === 'ENOENT') {
            reject(
              new NixError(
                `Nix is not installed on this runner ('${bin}' not found on PATH)`,
                'add a step before vps-nixos: - uses: cachix/install-nix-action@v31 (or DeterminateSystems/nix-installer-action); locally: install Nix (Debian: apt-get install nix-bin)',
              ),
            );
          } else reject(err);
        });
        child.on('close', (code) => {
          if (timer) clearTimeout(timer);
          opts.signal?.removeEventListener('abort', abort);
          if (partial && opts.onStderr) opts.onStderr(partial);
          resolve({ code: code ?? -1, stdout, stderr });
        });
      });
    },
  };
}

/** The last meaningful lines of Nix's stderr, for error messages. */
export function nixErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .filter((l) => l.trim() && !/^(warning|building|copying|these|\/nix\/store)/.test(l.trim()));
  const errIdx = lines.findIndex((l) => l.startsWith('error:'));
  return (errIdx >= 0 ? lines.slice(errIdx, errIdx + 4) : lines.slice(-4)).join(' | ');
}
