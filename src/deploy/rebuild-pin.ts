/**
 * Which nixos-rebuild the deploy runs: the one on PATH, else the one from the configuration's own
 * nixpkgs built for the runner's platform; never an unpinned `nixpkgs#` from a registry.
 */
import { VpsNixosError } from '../errors';
import type { FlakeRef } from '../inputs';
import { nixErrorText, type Nix } from '../nix/nix';
import { rebuildOnPath, type RebuildCommand } from './rebuild';

/** The runner's Nix system double (the target may be aarch64 while the runner is x86_64). */
export function runnerSystem(arch: string = process.arch): string {
  const cpu: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686' };
  return `${cpu[arch] ?? arch}-linux`;
}

const quoteName = (name: string) => (/^[A-Za-z0-9_-]+$/.test(name) ? name : `"${name}"`);

/**
 * nixos-rebuild for this deploy. With a flake and none on PATH: evaluate the configuration's
 * `pkgs.path` (the nixpkgs it was built from) and build `nixos-rebuild` from it for the runner.
 */
export async function resolveRebuild(
  nix: Nix,
  req: { flake?: FlakeRef; pathEnv?: string; system?: string; log: (line: string) => void },
): Promise<RebuildCommand> {
  const onPath = rebuildOnPath(req.pathEnv);
  if (onPath) return onPath;
  if (!req.flake)
    throw new VpsNixosError(
      'no nixos-rebuild on PATH, and only a prebuilt toplevel was given: there is no nixpkgs to take a pinned one from',
      'put nixos-rebuild on PATH before this step (e.g. nix profile install nixpkgs/<your nixpkgs rev>#nixos-rebuild), or give flake so its own nixpkgs provides it',
    );
  const config = `${req.flake.ref}#nixosConfigurations.${quoteName(req.flake.name)}`;
  const where = await nix.run(['eval', '--raw', `${config}.pkgs.path`]);
  if (where.code !== 0 || !where.stdout.startsWith('/'))
    throw new VpsNixosError(
      `no nixos-rebuild on PATH, and ${config}.pkgs.path (the configuration's nixpkgs) could not be evaluated: ${nixErrorText(where.stderr)}`,
      'put nixos-rebuild on PATH before this step, or check the configuration evaluates (nix eval on the same attribute)',
    );
  const system = req.system ?? runnerSystem();
  req.log(
    `nixos-rebuild: none on PATH; building it from the configuration's nixpkgs (${where.stdout}) for ${system}`,
  );
  const built = await nix.run([
    'build',
    '--no-link',
    '--json',
    '--file',
    where.stdout,
    '--argstr',
    'system',
    system,
    'nixos-rebuild',
  ]);
  const out =
    built.code === 0
      ? (JSON.parse(built.stdout) as { outputs: Record<string, string> }[])[0]?.outputs.out
      : undefined;
  if (!out)
    throw new VpsNixosError(
      `building nixos-rebuild from ${where.stdout} for ${system} failed: ${nixErrorText(built.stderr)}`,
      'put nixos-rebuild on PATH before this step',
    );
  return {
    argv0: `${out}/bin/nixos-rebuild`,
    prefix: [],
    from: `${out}/bin/nixos-rebuild (the configuration's nixpkgs, for ${system})`,
  };
}
