#!/bin/bash
# Preflight benchmark: compiles bench/preflight-bench.ts with the project's tsc (no ts-node here)
# and times the whole preflight on every flake under __tests__/fixtures/preflight, offline.
# Usage: bench/preflight-bench.sh [RUNS]   (default 5 per fixture: 1 cold + median of the rest)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/vps-nixos-preflight-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$root/node_modules/.bin/tsc" --outDir "$out" --rootDir "$root" --module commonjs --target es2022 \
  --moduleResolution node --esModuleInterop --skipLibCheck --strict --types node \
  "$root/bench/preflight-bench.ts"
ln -s "$root/node_modules" "$out/node_modules"
# Offline Nix as the tests run it (TESTBED.md §6): no nixbld group, no sandbox, no substituters.
export NIX_CONFIG=${NIX_CONFIG:-$'build-users-group =\nsandbox = false\nsubstituters ='}
node "$out/bench/preflight-bench.js" "$root" "${1:-5}"
