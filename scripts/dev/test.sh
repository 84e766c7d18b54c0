#!/usr/bin/env bash
# The test command (npm test): installs what it needs, rebuilds dist/ if the source is newer, then
# runs the unit and integration tests (real sshd, real Nix; shell linting and nix-instantiate
# --parse run inside jest too), then boots the 1 GB QEMU test VPS and runs the VM tests against
# it, then the end to end through the action entry (test/e2e/run.sh, stand-ins, a VPS of its
# own), then the in-place suite once more on the container VPS. Ends with one line: "tests: N passed,
# N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/dev/deps.sh

if [ -n "$(find src scripts package.json -newer dist/cli/index.js -print -quit 2>/dev/null)" ] || [ ! -f dist/cli/index.js ]; then
  echo "test: dist/ is older than src/: rebuilding" >&2
  npm run build >&2
fi

results=$(mktemp -d)
vps_run=
ct_run=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -z "$vps_run" ] || test/vps/vps down --run-dir "$vps_run" >&2 || true
  [ -z "$ct_run" ] || test/vps/vps down --run-dir "$ct_run" >&2 || true
  rm -rf "$results"
}
trap cleanup EXIT

status=0
npx jest --ci --selectProjects unit integration --json --outputFile="$results/host.json" "$@" || status=1

if [ "${VPS_TESTS:-1}" = 1 ]; then
  vps_run=$(mktemp -d "${TMPDIR:-/tmp}/vps-nixos-test-XXXX")
  start=$(date +%s)
  if test/vps/vps up --run-dir "$vps_run" --json >"$results/vps.json"; then
    echo "test: test VPS up in $(($(date +%s) - start)) s: $(cat "$results/vps.json")" >&2
    test/vps/vps exec --run-dir "$vps_run" -- npx jest --ci --selectProjects vm --json --outputFile="$results/vm.json" || status=1
  else
    echo "test: the test VPS did not come up" >&2
    status=1
  fi
  test/vps/vps down --run-dir "$vps_run" >&2 || true
  vps_run=
  # The end to end through the action entry, as on GitHub with real artifacts (test/e2e/run.sh).
  bash test/e2e/run.sh --artifacts standins --ram 1024 > >(tee "$results/e2e.log") || status=1
  # The in-place path where kexec is impossible: the nspawn container VPS.
  ct_run=$(mktemp -d "${TMPDIR:-/tmp}/vps-nixos-test-ct-XXXX")
  if test/vps/vps up --kind container --run-dir "$ct_run" --json >"$results/ct-vps.json"; then
    echo "test: container VPS up: $(cat "$results/ct-vps.json")" >&2
    test/vps/vps exec --run-dir "$ct_run" -- npx jest --ci __tests__/vm/infect.test.ts --selectProjects vm --json --outputFile="$results/ct.json" || status=1
  else
    echo "test: the container VPS did not come up" >&2
    status=1
  fi
  test/vps/vps down --run-dir "$ct_run" >&2 || true
  ct_run=
  # The harness's own tests that boot no VM (all of them: npm run test:vps; ci.yml on KVM).
  bash test/vps/tests/run-all.sh --quick 2> >(tee "$results/harness.log" >&2) || status=1
fi

# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const fs = require("fs");
  const [hostJson, vmJson, ctJson, harnessLog, e2eLog, status] = process.argv.slice(1);
  let passed = 0, failed = 0;
  for (const f of [hostJson, vmJson, ctJson]) {
    if (!fs.existsSync(f)) continue;
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests + r.numRuntimeErrorTestSuites;
  }
  if (fs.existsSync(harnessLog)) {
    const log = fs.readFileSync(harnessLog, "utf8");
    passed += (log.match(/^=== [\w-]+: ok in/gm) || []).length;
    failed += (log.match(/^=== [\w-]+: FAILED/gm) || []).length;
  }
  if (fs.existsSync(e2eLog)) {
    if (/^e2e: ok /m.test(fs.readFileSync(e2eLog, "utf8"))) passed += 1;
    else failed += 1;
  }
  // A failure outside the counted tests (the VPS did not boot, a suite did not start) still counts.
  if (status !== "0" && failed === 0) failed = 1;
  console.log(`tests: ${passed} passed, ${failed} failed`);
' "$results/host.json" "$results/vm.json" "$results/ct.json" "$results/harness.log" "$results/e2e.log" "$status"
exit "$status"
