#!/usr/bin/env bash
# Benchmark of the build stage on a stand-in closure (offline: no nixpkgs), with Debian's nix-bin.
# Prints: seconds to build + report (cold), bytes of the zstd file cache, seconds of a cache-hit
# rebuild after the closure was deleted from the store, and of a plain rebuild with everything valid.
# Usage: bench/build-bench.sh [FIRMWARE_MiB]   (default 256)
set -euo pipefail
cd "$(dirname "$0")/.."
fw_mib=${1:-256}
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters ='
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
salt=$(date +%s%N)

# Layers like a small server: libraries, an app, and one big incompressible "firmware" path.
mkdir "$work/flake"
# The cache dir must not be inside the flake: a path flake is copied into the store whole.
cat >"$work/flake/flake.nix" <<NIX
{
  outputs = { self }: let
    mk = name: mib: deps: builtins.derivation {
      inherit name; salt = "$salt"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "/bin/mkdir \$out; /usr/bin/head -c \${toString (mib * 1048576)} /dev/urandom > \$out/blob; echo \${toString deps} > \$out/deps" ];
    };
    glibc = mk "glibc-2.40" 30 [];
    openssl = mk "openssl-3.3.2" 8 [ glibc ];
    systemd = mk "systemd-256.8" 40 [ glibc openssl ];
    openssh = mk "openssh-9.8p1" 4 [ glibc openssl ];
    firmware = mk "linux-firmware-20241110" $fw_mib [];
    kernel = mk "linux-6.6.63" 120 [];
    toplevel = mk "nixos-system-bench-24.11" 0 [ systemd openssh firmware kernel ];
  in { nixosConfigurations.bench.config.system.build.toplevel = toplevel; };
}
NIX

cli() { node dist/cli/index.js build --flake "$work/flake#bench" --cache-dir "$work/cache" --json 2>/dev/null; }
secs() { local s; s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }

cold=$(secs cli)
doc=$(cli)
toplevel=$(node -e 'const d=JSON.parse(require("fs").readFileSync(0));console.log(d.toplevel)' <<<"$doc")
nar=$(node -e 'const d=JSON.parse(require("fs").readFileSync(0));console.log(d.closure.narBytes)' <<<"$doc")
cache_bytes=$(du -sb "$work/cache/entries" | cut -f1)
report=$(secs nix --extra-experimental-features nix-command path-info --json -rsS "$toplevel")
valid=$(secs cli)
mapfile -t paths < <(nix --extra-experimental-features nix-command path-info -r "$toplevel" | tac)
nix-store --delete "${paths[@]}" >/dev/null 2>&1
hit=$(secs cli)

printf 'stand-in closure: %s paths, %s bytes NAR (firmware %s MiB of random data)\n' "${#paths[@]}" "$nar" "$fw_mib"
printf 'cold build + report + cache save: %.2f s\n' "$cold"
printf 'closure report (nix path-info -rsS): %.2f s\n' "$report"
printf 'file cache (zstd) bytes: %s\n' "$cache_bytes"
printf 'rebuild, everything valid in the store: %.2f s\n' "$valid"
printf 'rebuild after deleting the closure, from the cache (hit): %.2f s\n' "$hit"
