#!/bin/bash
# The deploy stand-ins without a VM (a few seconds): `vps standins` prints the toplevel variants,
# test/standins/make-flake.sh's flake evaluates to the SAME store paths, and the nixos-rebuild
# stand-in builds them, logs its argv and refuses bad usage with exit 1.
# Usage: standins-flake.sh [SYSTEM_BALLAST]   (default 0)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
sb=${1:-0}
root=$(cd "$T_DIR/../../.." && pwd)
rebuild=$root/test/standins/bin/nixos-rebuild
s=$("$VPS" standins --ballast "$sb" --json)
variants=(ok ok2 new-kernel exit4 unhealthy cut-sshd)
v() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["variants"][sys.argv[2]])' "$s" "$1"; }
expect_eq "$(v ok)" "$(json_get "$s" toplevel)" "variants.ok == toplevel"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flake=$("$root/test/standins/make-flake.sh" "$work/flake" --system-ballast "$sb")
expect_eq "$flake" "path:$work/flake" "make-flake.sh prints the flake ref"
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes'
declare -A seen=()
for name in "${variants[@]}"; do
  want=$(v "$name")
  got=$(nix build --no-link --json "$flake#nixosConfigurations.$name.config.system.build.toplevel" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
  expect_eq "$got" "$want" "flake $name"
  [[ -z ${seen[$want]:-} ]] || fail "$name and ${seen[$want]} are the same path"
  seen[$want]=$name
  grep -qx "$name" "$want/variant" || fail "$want/variant is not $name"
done
for attr in destroyFormatMountNoDeps diskoScriptNoDeps; do
  got=$(nix build --no-link --json "$flake#nixosConfigurations.ok.config.system.build.$attr" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
  expect_eq "$got" "$(json_get "$s" diskScript)" "flake $attr"
done

# what the variants differ in
ok=$(v ok) ok2=$(v ok2) nk=$(v new-kernel) bad=$(v unhealthy)
expect_eq "$(cat "$ok/health") $(cat "$bad/health")" "ok bad" "health files (ok, unhealthy)"
expect_eq "$(readlink -f "$ok/kernel")" "$(readlink -f "$ok2/kernel")" "ok2 keeps the kernel"
[[ $(readlink -f "$ok/kernel") != "$(readlink -f "$nk/kernel")" ]] || fail "new-kernel has the same kernel"
ok "new-kernel has another kernel"
expect_eq "$(nix store diff-closures "$ok" "$ok2" 2>&1)" "hello-standin: 1.0 → 2.0" "diff-closures ok ok2"
expect_eq "$(cat "$ok/ballast")" "$(cat "$ok2/ballast")" "variants share the ballast"

# the nixos-rebuild stand-in: build (no target contact), argv log, bad usage
log=$work/rebuild.log
got=$(NIXOS_REBUILD_STANDIN_LOG=$log NIX_SSHOPTS='-p 22 -o BatchMode=yes' "$rebuild" build --flake "$flake#ok2" --no-reexec 2>/dev/null)
expect_eq "$got" "$ok2" "nixos-rebuild build --flake REF#ok2"
expect_eq "$(cat "$log")" "{\"argv\":[\"build\",\"--flake\",\"$flake#ok2\",\"--no-reexec\"],\"NIX_SSHOPTS\":\"-p 22 -o BatchMode=yes\",\"cwd\":\"$PWD\",\"time\":$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["time"])' "$(cat "$log")")}" "the argv log line"
got=$("$rebuild" build --store-path "$nk" 2>/dev/null)
expect_eq "$got" "$nk" "nixos-rebuild build --store-path"
for bad_args in "" "switch" "frob --flake x#y" "switch --flake" "switch --flake $flake#ok" \
  "switch --store-path /nix/store/00000000000000000000000000000000-nope --target-host root@192.0.2.1" \
  "switch --flake $flake#ok --store-path $ok --target-host root@192.0.2.1" "repl --flake $flake#ok"; do
  rc=0
  # shellcheck disable=SC2086  # word-split on purpose
  "$rebuild" $bad_args >/dev/null 2>&1 || rc=$?
  expect_eq "$rc" 1 "exit status of nixos-rebuild ${bad_args:-(no arguments)}"
done
