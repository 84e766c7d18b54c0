#!/bin/bash
# npm run bench:faults: the fault campaign (issue 21) on the test VPS, outside CI (its bad-input
# part runs in CI: __tests__/integration/bad-inputs.test.ts). Boots a 1 GiB VM with a spare disk
# that no layout names (VPS_SPARE_DISK_MIB), compiles bench/faults/*.ts with the project's tsc and
# runs the campaign inside the VM's netns: bad inputs, deploy faults, bootstrap faults (snapshots
# `fresh`, `installer`, `deployed`), a scan of every output for key material. Prints a Markdown
# table, one row per fault; its last line is
#   faults: N injected, N unreachable, N wrong-disk; bad inputs: N rejected of M; secrets leaked: N
# Usage: bench/faults.sh [all|deploy|bootstrap]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VPS=test/vps/vps
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
out=$(mktemp -d /tmp/vps-nixos-faults-build.XXXXXX)
"$root/node_modules/.bin/tsc" --outDir "$out" --rootDir "$root" --module commonjs --target es2022 \
  --moduleResolution node --esModuleInterop --skipLibCheck --strict --types node,jest \
  --resolveJsonModule "$root/bench/faults/campaign.ts"
ln -s "$root/node_modules" "$out/node_modules"
# the compiled helpers find scripts/ and dist/ from their own place: give them the tree's
for d in scripts dist test; do ln -s "$root/$d" "$out/$d"; done
"$VPS" standins --ballast 0 --json >/dev/null
j=$(VPS_SPARE_DISK_MIB=64 "$VPS" up --json)
rd=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["runDir"])' "$j")
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1; rm -rf "$out"' EXIT
"$VPS" savevm fresh --run-dir "$rd" >/dev/null
"$VPS" exec --run-dir "$rd" -- node "$out/bench/faults/campaign.js" "${1:-all}"
