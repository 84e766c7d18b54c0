#!/bin/bash
# The harness's own tests: image (cached by hash), VM, snapshots, container, concurrent VPSes,
# kexec + install by hand (npm run test:vps; GitHub's ci.yml runs them on KVM). --quick: only those
# that boot no VM (npm test runs these; the VM suites and the end to end boot, snapshot and kexec
# the same harness, and the bootstrap suite checks the installer as kexec-install.sh does).
# Prints per-test times; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
total=$(now)
step() {
  local name=$1 t0; shift
  t0=$(now)
  echo "=== $name" >&2
  if "$@"; then echo "=== $name: ok in $(since "$t0")s" >&2
  else echo "=== $name: FAILED after $(since "$t0")s" >&2; exit 1; fi
}
step image "$VPS" image
step standins "$VPS" standins --ballast 0 --json
step standins-flake ./standins-flake.sh
step container ./container.sh
if [[ ${1:-} == --quick ]]; then
  echo "=== quick harness tests passed in $(since "$total")s" >&2
  exit 0
fi
step vm ./vm.sh 1024
step snapshot ./snapshot.sh
step concurrent ./concurrent.sh
step kexec-install ./kexec-install.sh 1024 0
echo "=== all harness tests passed in $(since "$total")s" >&2
