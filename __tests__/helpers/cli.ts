import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(__dirname, '../../dist/cli/index.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (dist/, as users get it), optionally inside a network namespace. */
export function runCli(
  args: string[],
  opts: {
    netns?: string;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    /** SIGKILL the CLI as soon as its stderr matches (an interrupted run); code is then -9. */
    killOn?: RegExp;
    /** Called with all of stderr so far, each time more arrives (to act mid-run). */
    onStderr?: (all: string) => void;
  } = {},
): Promise<CliResult> {
  const argv = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, process.execPath, CLI, ...args]
    : [process.execPath, CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    let killed = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr);
      if (opts.killOn && !killed && opts.killOn.test(stderr)) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `vps-nixos ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60000} ms\n${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: killed ? -9 : (code ?? -1), stdout, stderr });
    });
  });
}
