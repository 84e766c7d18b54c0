/**
 * Offline stand-ins for a NixOS configuration (no nixpkgs here): flakes whose
 * nixosConfigurations.<name>.config.system.build.toplevel is a /bin/sh derivation
 * with layers of dependencies of known sizes, one of them a large "linux-firmware".
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

/** Nix 2.8 as root without a daemon, nixbld group or internet (TESTBED.md §6). */
export const OFFLINE_NIX_CONFIG = [
  'build-users-group =',
  'sandbox = false',
  'substituters =',
  'experimental-features = nix-command flakes',
].join('\n');

export interface StandinFlake {
  dir: string;
  ref: string;
}

export interface StandinOptions {
  /** Bytes of the stand-in firmware path. */
  firmwareBytes?: number;
  /** Changes the toplevel's derivation (a configuration change). */
  tag?: string;
  /** Define disko's disk script: by its current name (destroyFormatMountNoDeps) or the legacy one. */
  disko?: boolean | 'legacy';
  /** Salt the dependencies too, so this closure shares no path with other test builds. */
  uniqueDeps?: boolean;
  /** Define config.system.build.vpsNixosUntrimmed: the toplevel plus docs and fonts, as without our module. */
  untrimmed?: boolean;
  /** Use a non-flake path input whose content goes into the toplevel (for flake.lock tests). */
  inputDir?: string;
}

/** Writes a stand-in flake into a fresh dir. */
export function standinFlake(opts: StandinOptions = {}): StandinFlake {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-flake-'));
  writeFileSync(join(dir, 'flake.nix'), flakeText(opts));
  return { dir, ref: dir };
}

/** The flake.nix text; exported so tests can rewrite it in place. */
export function flakeText(opts: StandinOptions = {}): string {
  const fw = opts.firmwareBytes ?? 3 * 1024 * 1024;
  const inputs = opts.inputDir
    ? `inputs.extra = { url = "path:${opts.inputDir}"; flake = false; };`
    : '';
  const args = opts.inputDir ? '{ self, extra }' : '{ self }';
  const extraCmd = opts.inputDir ? ' /bin/cat ${extra}/data > $out/extra;' : '';
  return `{
  description = "vps-nixos test stand-in (not NixOS)";
  ${inputs}
  outputs = ${args}: let
    # A path of 'size' bytes that references 'deps' (their paths are written into it).
    mk = name: size: deps: builtins.derivation {
      inherit name;
      salt = "${opts.uniqueDeps ? (opts.tag ?? '') : ''}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "/bin/mkdir $out; /usr/bin/head -c \${toString size} /dev/zero > $out/blob; echo \${toString deps} > $out/deps" ];
    };
    libA = mk "liba-1.2" 100000 [];
    libB = mk "libb-2.0" 200000 [ libA ];
    app = mk "app-0.9" 50000 [ libB libA ];
    firmware = mk "linux-firmware-20241110" ${fw} [];
    toplevel = builtins.derivation {
      name = "nixos-system-standin-24.11";
      system = "x86_64-linux";
      builder = "/bin/sh";
      tag = "${opts.tag ?? 'v1'}";
      args = [ "-c" "/bin/mkdir -p $out/bin; echo \${app} \${firmware} > $out/deps;${extraCmd} echo standin > $out/nixos-version" ];
    };
    docs = mk "nixos-manual-html-24.11" 1500000 [];
    fonts = mk "dejavu-fonts-2.37" 700000 [];
    untrimmed = builtins.derivation {
      name = "nixos-system-standin-24.11";
      system = "x86_64-linux";
      builder = "/bin/sh";
      tag = "${opts.tag ?? 'v1'}-untrimmed";
      args = [ "-c" "/bin/mkdir -p $out/bin; echo \${app} \${firmware} \${docs} \${fonts} > $out/deps; echo standin > $out/nixos-version" ];
    };
    disko = builtins.derivation {
      name = "disko";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo '#!/bin/sh' > $out" ];
    };
  in {
    nixosConfigurations.standin.config.system.build = { inherit toplevel; }${opts.disko ? ` // { ${opts.disko === 'legacy' ? 'diskoScriptNoDeps' : 'destroyFormatMountNoDeps'} = disko; }` : ''}${opts.untrimmed ? ' // { vpsNixosUntrimmed = untrimmed; }' : ''};
  };
}
`;
}

/** Makes a non-flake input dir with one data file. */
export function inputDir(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-input-'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'data'), content);
  return dir;
}

/** Runs nix with the offline settings. */
export function nixSync(args: string[], cwd?: string): string {
  return execFileSync('nix', ['--extra-experimental-features', 'nix-command flakes', ...args], {
    cwd,
    env: { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A stand-in flake of described hosts (no nixpkgs, no module system): each
 * nixosConfigurations.NAME.config.vpsNixos.deploy is the value given (null: a configuration
 * without our module), written as Nix from JSON. Returns the `path:` reference of its dir.
 */
export function describedFlake(hosts: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-hosts-'));
  writeFileSync(join(dir, 'hosts.json'), JSON.stringify(hosts, null, 2));
  writeFileSync(
    join(dir, 'flake.nix'),
    `# vps-nixos test STAND-IN (not NixOS): host descriptions only.
{
  outputs = { self }: {
    nixosConfigurations = builtins.mapAttrs
      (name: deploy: { config = if deploy == null then { } else { vpsNixos.deploy = deploy; }; })
      (builtins.fromJSON (builtins.readFile ./hosts.json));
  };
}
`,
  );
  return `path:${dir}`;
}
