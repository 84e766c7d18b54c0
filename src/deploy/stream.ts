/** Commands of the deploy whose output streams into the log by whole lines: nixos-rebuild, nix-copy-closure, switch.sh. */
import { spawnChild } from '../children';

export interface StreamedRun {
  code: number;
  /** The last lines of stdout+stderr (kept for the report and for parsing). */
  output: string;
  seconds: number;
}

/** How many of the last lines a run keeps for its report. */
const KEEP_LINES = 400;

/**
 * Cuts chunks of two streams into whole lines, hands each to `onLine` as it completes and keeps
 * the last ones. `end` flushes what is left of a line without its newline.
 */
export function lineCollector(onLine: (line: string) => void): {
  line(l: string): void;
  chunk(stream: 'stdout' | 'stderr', text: string): void;
  end(): string;
} {
  const kept: string[] = [];
  const partial = { stdout: '', stderr: '' };
  const line = (l: string) => {
    onLine(l);
    kept.push(l);
    if (kept.length > KEEP_LINES) kept.shift();
  };
  return {
    line,
    chunk(stream, text) {
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const l of lines) line(l);
    },
    end() {
      for (const s of ['stdout', 'stderr'] as const) {
        if (partial[s]) line(partial[s]);
        partial[s] = '';
      }
      return kept.join('\n');
    },
  };
}

/** Runs a command on the runner, streaming whole lines; never throws for a non-zero exit. */
export function runStreaming(
  cmd: { argv0: string; prefix: string[] },
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
  timeoutMs: number,
): Promise<StreamedRun> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawnChild(cmd.argv0, [...cmd.prefix, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = lineCollector(onLine);
    child.stdout.on('data', (chunk: Buffer) => lines.chunk('stdout', chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => lines.chunk('stderr', chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    let finished = false;
    const finish = (code: number) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ code, output: lines.end(), seconds: (Date.now() - start) / 1000 });
    };
    child.on('error', (err) => {
      lines.line(`could not run ${cmd.argv0}: ${err.message}`);
      finish(127);
    });
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}
