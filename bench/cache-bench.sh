#!/bin/bash
# npm run bench:cache: the closure cache against an upstream binary cache, in one run, with the
# built CLI and the runner's real Nix (no VM). A signed file:// cache stands for cache.nixos.org and
# holds most of a stand-in closure (test/standins/make-flake.sh, --system-ballast, default 192MiB: a size of its own, so
# no other variant shares its paths and a fresh store can be made by deleting them):
# everything but the system's own small paths (toplevel, kernel/initrd stand-ins, hello).
#   1. build with a cache dir: the saved entry holds only what upstream does not serve
#      (prints the closure, the upstream share, the entry: paths and bytes, and the ratio)
#   2. a fresh store (the closure deleted): build again; the entry and upstream bring everything
#      back and nothing is built (prints the restored paths and the seconds)
#   3. a cache that refuses the save: the run stays green, with a warning
# Usage: bench/cache-bench.sh [--system-ballast SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
sb=192MiB
while (($#)); do
  case $1 in
    --system-ballast) sb=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
offline=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes'
export NIX_CONFIG=$offline
nixc() { nix --extra-experimental-features 'nix-command flakes' "$@"; }
# a configuration of its own (a tag in the flake's description changes nothing; the ballast size does)
flake=$(test/standins/make-flake.sh "$work/flake" --system-ballast "$sb")
top=$(nixc build --no-link --json "$flake#nixosConfigurations.ok.config.system.build.toplevel" 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
mapfile -t all < <(nix-store -qR "$top")
own='nixos-system-|linux-standin-|initrd-linux-standin-|hello-standin-'
upstream_paths=()
for p in "${all[@]}"; do [[ $p =~ $own ]] || upstream_paths+=("$p"); done
nixc key generate-secret --key-name bench-upstream-1 >"$work/sk"
pk=$(nixc key convert-secret-to-public <"$work/sk")
nixc copy --to "file://$work/upstream?compression=zstd&secret-key=$work/sk" "${upstream_paths[@]}"
export NIX_CONFIG="$offline
extra-substituters = file://$work/upstream
trusted-public-keys = $pk"
build() {
  local t0 rc
  t0=$(date +%s.%N)
  set +e
  node dist/cli/index.js build --flake "$flake#ok" --json --cache-dir "$1" >"$work/out.json" 2>"$work/err.log"
  rc=$?
  set -e
  secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  return $rc
}
closure_bytes=$(nix path-info -S "$top" 2>/dev/null | awk '{print $2}')
zstd_all=$(for p in "${all[@]}"; do nix-store --dump "$p"; done | zstd -q -3 -c | wc -c)
echo "closure: ${#all[@]} paths, NAR $closure_bytes B, zstd -3 $zstd_all B; upstream serves ${#upstream_paths[@]} paths ($(du -sb "$work/upstream" | cut -f1) B in its cache)"

build "$work/cache"
echo "1. first build, cache saved in $secs s: $(json_file_get "$work/out.json" cacheSave detail)"
saved=$(json_file_get "$work/out.json" cacheSave bytes)
printf '   entry %s B of %s B zstd for the whole closure: ratio %.5f (%s of %s paths, with the disk script)\n' "$saved" "$zstd_all" \
  "$(python3 -c "print($saved / $zstd_all)")" "$(json_file_get "$work/out.json" cacheSave savedPaths)" "$(json_file_get "$work/out.json" cacheSave closurePaths)"

# the closure and whatever else refers to it, referrers first
mapfile -t doomed < <(nix-store -q --referrers-closure "${all[@]}" | tac)
nix-store --delete --ignore-liveness "${doomed[@]}" >/dev/null 2>&1 || true
left=0; for p in "${all[@]}"; do nix-store --check-validity "$p" 2>/dev/null && left=$((left + 1)); done
build "$work/cache"
built=$(grep -c "building '" "$work/err.log" || true)
echo "2. fresh store ($left of ${#all[@]} paths left): rebuilt in $secs s, cache $(json_file_get "$work/out.json" cache hit), $(json_file_get "$work/out.json" cache restoredPaths) paths from the entry, the rest from upstream, $built derivations built"

mkdir -p "$work/refusing"; : >"$work/refusing/entries"  # a file where the entries dir should be
build "$work/refusing" && rc=0 || rc=$?
echo "3. a cache that refuses the save: exit $rc, save $(json_file_get "$work/out.json" cacheSave saved); $(grep -m1 'cache: not saved' "$work/err.log" || echo 'no warning')"
