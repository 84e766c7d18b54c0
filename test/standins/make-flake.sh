#!/bin/bash
# Writes a self-contained stand-in flake (no nixpkgs, not NixOS; see test/STANDINS.md) for the
# deploy tests:
#   make-flake.sh OUTDIR [--system-ballast SIZE] [--authorized-key KEYLINE]...
#                 [--static IFACE ADDRESS/PREFIX GATEWAY] [--describe VARIANT TARGET HOSTKEY]...
#                 [--json]
# OUTDIR gets flake.nix and copies of test/vps/standins/{standins.nix,builder.sh,nix-standin.sh,
# activate,switch-to-configuration,disk-script}. The one thing outside OUTDIR is the image's
# system-root.tar, which a fixed-output derivation copies (its store path depends on its sha256
# only): the image must be built (test/vps/vps image). For each variant
# (ok ok2 new-kernel exit4 unhealthy cut-sshd):
#   nixosConfigurations.<variant>.config.system.build.toplevel           the system toplevel
#   nixosConfigurations.<variant>.config.system.build.destroyFormatMountNoDeps  the disko stand-in
#     (also as diskoScriptNoDeps, disko's legacy name)
# These are the same derivations as `test/vps/vps standins --system-ballast SIZE` builds, so the
# same store paths ("variants" in its JSON). SIZE as for `vps standins` ("0", "64MiB", "1GiB");
# the default is 0 (no ballast paths), where `vps standins` defaults to 1GiB. --authorized-key
# puts an ssh public key line into users.users.root.openssh.authorizedKeys.keys, as a user's
# configuration carries the deploy key (the preflight checks it; the toplevels do not change).
# --static writes the host's static IPv4 network into networking.*, as a configuration for a host
# without DHCP must (the preflight compares it with the probe).
# --describe gives that variant's configuration a host description, config.vpsNixos.deploy =
# { target = TARGET; hostKey = HOSTKEY; } (a plain attribute set: there is no module system), as
# our module's option would read: `vps-nixos deploy --flake path:OUTDIR#VARIANT` then needs no
# target or pin (src/hosts/).
# Refer to it as path:OUTDIR (a plain OUTDIR inside a git work tree would be read as git+file, which
# ignores untracked files). Prints path:OUTDIR, or with --json
#   {"flake": "path:OUTDIR", "systemBallastBytes": N, "configurations": ["ok", ...]}
# Build one offline with Debian's Nix 2.8:
#   nix --extra-experimental-features 'nix-command flakes' build --no-link --json \
#     path:OUTDIR#nixosConfigurations.ok.config.system.build.toplevel \
#     --option build-users-group '' --option sandbox false --option substituters ''
set -euo pipefail
src=$(cd "$(dirname "$0")/../vps/standins" && pwd)
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }

# parse_size: the harness's own ("278MiB", "1GiB", "512M", "0", "1234" bytes)
# shellcheck source=../vps/lib/common.sh
. "$src/../lib/common.sh"
die() { printf 'make-flake.sh: %s\n' "$*" >&2; exit 1; }

outdir="" sb=0 json=0 keys=() static=() describe=()
while (($#)); do
  case $1 in
    --system-ballast|--ballast) (($# >= 2)) || die "$1 needs a SIZE"; sb=$2; shift 2 ;;
    --authorized-key) (($# >= 2)) || die "$1 needs a KEYLINE"; keys+=("$2"); shift 2 ;;
    --static) (($# >= 4)) || die "$1 needs IFACE ADDRESS/PREFIX GATEWAY"; static=("$2" "$3" "$4"); shift 4 ;;
    --describe) (($# >= 4)) || die "$1 needs VARIANT TARGET HOSTKEY"; describe+=("$2" "$3" "$4"); shift 4 ;;
    --json) json=1; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see the header of $0)" ;;
    *) [[ -z $outdir ]] || die "one OUTDIR only"; outdir=$1; shift ;;
  esac
done
[[ -n $outdir ]] || usage
sb=$(parse_size "$sb")
read -r rootfs_tar rootfs_sha rootfs_bytes < <(rootfs_facts "$(image_dir)")

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
files=(standins.nix builder.sh nix-standin.sh activate switch-to-configuration disk-script)
for f in "${files[@]}"; do
  # the executable bit is part of the NAR, so of the store path: keep the mode
  cp --preserve=mode "$src/$f" "$outdir/$f"
done
# A nixpkgs with one package: nixos-rebuild, the harness's stand-in (test/standins/bin).
mkdir -p "$outdir/nixpkgs-standin"
cp --preserve=mode "$src/../../standins/bin/nixos-rebuild" "$outdir/nixpkgs-standin/nixos-rebuild"
cat > "$outdir/nixpkgs-standin/default.nix" <<'NIX'
# STAND-IN for nixpkgs (vps-nixos tests): `import <this> { system = …; }` has nixos-rebuild only.
{ system ? builtins.currentSystem, ... }:
{
  nixos-rebuild = derivation {
    name = "nixos-rebuild-standin";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir -p $out/bin && /bin/cp ${./nixos-rebuild} $out/bin/nixos-rebuild && /bin/chmod 0755 $out/bin/nixos-rebuild" ];
  };
}
NIX
variants=(ok ok2 new-kernel exit4 unhealthy cut-sshd)
nix_keys=""
for k in "${keys[@]}"; do
  [[ $k =~ ^[a-z0-9@.-]+\ [A-Za-z0-9+/=]+(\ [^\"\$\\]*)?$ ]] || die "--authorized-key: not an ssh public key line: $k"
  nix_keys+=" \"$k\""
done
nix_descriptions=""
target_re='^[][A-Za-z0-9_.@:-]+$' key_re='^[a-z0-9@.-]+ [A-Za-z0-9+/=]+$'
for ((i = 0; i < ${#describe[@]}; i += 3)); do
  [[ ${describe[i]} =~ ^[a-z0-9-]+$ && ${describe[i+1]} =~ $target_re && ${describe[i+2]} =~ $key_re ]] ||
    die "--describe: want VARIANT TARGET 'TYPE BASE64', got ${describe[*]:i:3}"
  nix_descriptions+=" \"${describe[i]}\" = { target = \"${describe[i+1]}\"; hostKey = \"${describe[i+2]}\"; };"
done
nix_network=""
if ((${#static[@]})); then
  [[ ${static[0]} =~ ^[A-Za-z0-9._-]+$ && ${static[2]} =~ ^[0-9.]+$ && ${static[1]} =~ ^([0-9.]+)/([0-9]+)$ ]] ||
    die "--static: want IFACE ADDRESS/PREFIX GATEWAY, got ${static[*]}"
  nix_network="networking = {
            useDHCP = false;
            interfaces.\"${static[0]}\".ipv4.addresses = [ { address = \"${BASH_REMATCH[1]}\"; prefixLength = ${BASH_REMATCH[2]}; } ];
            defaultGateway = { address = \"${static[2]}\"; interface = \"${static[0]}\"; };
          };"
fi
cat > "$outdir/flake.nix" <<EOF
# A vps-nixos test STAND-IN flake (not NixOS, no nixpkgs), written by test/standins/make-flake.sh.
# Its toplevels are the harness's stand-in systems (test/STANDINS.md), system ballast $sb bytes.
{
  description = "vps-nixos stand-in systems for deploy tests (not NixOS)";
  outputs = { self }:
    let
      standins = import ./standins.nix {
        systemBallastBytes = $sb;
        rootfsTar = "$rootfs_tar";
        rootfsSha256 = "$rootfs_sha";
        rootfsBytes = $rootfs_bytes;
      };
      # Host descriptions (--describe): what our module's vpsNixos.deploy would hold.
      descriptions = {$nix_descriptions };
      configuration = name: toplevel: {
        config = (if descriptions ? \${name} then { vpsNixos.deploy = descriptions.\${name}; } else { }) // {
          system.build = {
            inherit toplevel;
            # disko's current name, and its legacy one (kept by disko until 2.0), as disko has both
            destroyFormatMountNoDeps = standins.diskScript;
            diskoScriptNoDeps = standins.diskScript;
          };
          # What the preflight reads, as the stand-in system is (its sshd runs, root logs in by key).
          services.openssh.enable = true;
          users.users.root.openssh.authorizedKeys.keys = [$nix_keys ];
          $nix_network
          # The layout the disk script (§5) lays out, as disko describes it: what the preflight
          # (no-disko, disko-device-mismatch) and the plan's installer-tools check read.
          disko.devices.disk.main = {
            type = "disk";
            device = "/dev/vda";
            content = {
              type = "gpt";
              partitions = {
                boot = { size = "1M"; type = "EF02"; };
                ESP = { size = "256M"; type = "EF00"; content = { type = "filesystem"; format = "vfat"; mountpoint = "/boot"; }; };
                root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; };
              };
            };
          };
        };
        # The nixpkgs nixos-rebuild is taken from when none is on PATH (a stand-in: test/STANDINS.md).
        pkgs.path = ./nixpkgs-standin;
      };
    in {
      nixosConfigurations = builtins.mapAttrs configuration standins.variants;
    };
}
EOF

if ((json)); then
  list=$(printf '"%s",' "${variants[@]}")
  printf '{"flake":"path:%s","systemBallastBytes":%s,"configurations":[%s]}\n' "$outdir" "$sb" "${list%,}"
else
  printf 'path:%s\n' "$outdir"
fi
