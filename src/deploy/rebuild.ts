/** Running nixos-rebuild: which one, with which arguments, and what its output says. */
import { spawnChild } from '../children';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const DEPLOY_ACTIONS = ['switch', 'boot', 'test', 'dry-activate', 'build'] as const;
export type DeployAction = (typeof DEPLOY_ACTIONS)[number];

export interface RebuildRequest {
  action: DeployAction;
  /** A flake output (`--flake REF#NAME`), or a prebuilt system (`--store-path`). */
  flake?: { ref: string; name: string };
  storePath?: string;
  targetHost?: string;
  buildHost?: string;
  useSudo: boolean;
}

/** The argument list after the command, in nixos-rebuild's own terms. */
export function rebuildArgs(r: RebuildRequest): string[] {
  const args: string[] = [r.action];
  if (r.flake) args.push('--flake', `${r.flake.ref}#${r.flake.name}`);
  else if (r.storePath) args.push('--store-path', r.storePath);
  else throw new Error('rebuildArgs: a flake or a store path is required');
  if (r.targetHost && r.action !== 'build') args.push('--target-host', r.targetHost);
  if (r.buildHost) args.push('--build-host', r.buildHost);
  // --use-remote-sudo: understood by the classic script and, as an alias of --sudo, by nixos-rebuild-ng.
  if (r.useSudo && r.action !== 'build') args.push('--use-remote-sudo');
  return args;
}

/** How nixos-rebuild is run: the executable, what goes before its arguments, and where it came from. */
export interface RebuildCommand {
  argv0: string;
  prefix: string[];
  from: string;
}

/** nixos-rebuild on PATH (it wins: the user's choice, and the tests' stand-in), or undefined. */
export function rebuildOnPath(pathEnv = process.env.PATH ?? ''): RebuildCommand | undefined {
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'nixos-rebuild');
    try {
      accessSync(candidate, constants.X_OK);
      return { argv0: candidate, prefix: [], from: candidate };
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Units switch-to-configuration reported as failed (it exits 4 then): the Perl and the Rust
 * versions both print `warning: the following units failed: a.service, b.service`.
 */
export function failedUnitsFrom(output: string): string[] {
  const units = new Set<string>();
  for (const m of output.matchAll(/the following units failed: ([^\n]+)/g)) {
    for (const u of (m[1] as string).split(/[,\s]+/)) if (u) units.add(u);
  }
  return [...units].sort();
}

export interface RebuildRun {
  code: number;
  /** The last lines of stdout+stderr (kept for the report and for parsing). */
  output: string;
  seconds: number;
}

/** Runs it with NIX_SSHOPTS set, streaming whole lines; never throws for a non-zero exit. */
export function runRebuild(
  cmd: { argv0: string; prefix: string[] },
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
  timeoutMs: number,
): Promise<RebuildRun> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawnChild(cmd.argv0, [...cmd.prefix, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const kept: string[] = [];
    const partial = { stdout: '', stderr: '' };
    const take = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = partial[stream] + chunk.toString('utf8');
      const lines = text.split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const l of lines) line(l);
    };
    const line = (l: string) => {
      onLine(l);
      kept.push(l);
      if (kept.length > 400) kept.shift();
    };
    child.stdout.on('data', take('stdout'));
    child.stderr.on('data', take('stderr'));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    let finished = false;
    const finish = (code: number) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const s of ['stdout', 'stderr'] as const) if (partial[s]) line(partial[s]);
      resolve({
        code,
        output: kept.join('\n'),
        seconds: (Date.now() - start) / 1000,
      });
    };
    child.on('error', (err) => {
      line(`could not run ${cmd.argv0}: ${err.message}`);
      finish(127);
    });
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}
