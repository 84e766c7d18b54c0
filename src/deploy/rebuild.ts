/** Running nixos-rebuild: which one, with which arguments, and what its output says. */
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
