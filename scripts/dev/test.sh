#!/usr/bin/env bash
# The test command (npm test): installs what it needs, rebuilds dist/ if the source is newer, then
# runs the unit and integration tests (real sshd, real Nix; shell linting and nix-instantiate
# --parse run inside jest too), then the tests that boot a test VPS, in two lanes side by side,
# each with VPSes of its own (most of a VM test is waiting on one emulated CPU, and this box has
# two cores):
#   lane A: the 1 GB QEMU test VPS for the bootstrap suite, then the end to end through the
#           action entry (test/e2e/run.sh, stand-ins, a VPS of its own);
#   lane B: a second QEMU test VPS for the in-place, deploy and described-host suites, then the
#           in-place suite once more on the container VPS, then the harness's own quick tests.
# TEST_LANES=1 runs lane A, then lane B. Each lane's output goes to a log printed when both end.
# Ends with one line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/dev/deps.sh

if [ -n "$(find src scripts package.json -newer dist/cli/index.js -print -quit 2>/dev/null)" ] || [ ! -f dist/cli/index.js ]; then
  echo "test: dist/ is older than src/: rebuilding" >&2
  npm run build >&2
fi

results=$(mktemp -d)
lanes=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local pid f
  # Each lane is a process group of its own (set -m): its jest, QEMU and e2e go with it.
  for pid in "${lanes[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for f in "$results"/*.rundir; do
    if [[ -f $f ]]; then test/vps/vps down --run-dir "$(cat "$f")" >&2 || true; fi
  done
  rm -rf "$results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
npx jest --ci --selectProjects unit integration --json --outputFile="$results/host.json" "$@" || status=1

# vm_suites NAME [KIND] -- JEST ARGS…: boots a VPS (a QEMU VM, or KIND), runs jest's vm project in
# its netns, takes the VPS down. The suite results go to $results/NAME.json.
vm_suites() {
  local name=$1 kind=vm rd s=0
  shift
  if [[ $1 != -- ]]; then kind=$1; shift; fi
  shift
  rd=$(mktemp -d "${TMPDIR:-/tmp}/vps-nixos-test-$name-XXXX")
  echo "$rd" >"$results/$name.rundir"
  if test/vps/vps up --kind "$kind" --run-dir "$rd" --json >"$results/$name-vps.json"; then
    echo "test: $name: $kind VPS up: $(cat "$results/$name-vps.json")" >&2
    test/vps/vps exec --run-dir "$rd" -- npx jest --ci --selectProjects vm --json \
      --outputFile="$results/$name.json" "$@" || s=1
  else
    echo "test: $name: the $kind VPS did not come up" >&2
    s=1
  fi
  test/vps/vps down --run-dir "$rd" >&2 || true
  rm -f "$results/$name.rundir"
  return "$s"
}

lane_a() {
  local s=0
  vm_suites vm-a -- __tests__/vm/bootstrap.test.ts || s=1
  # The end to end through the action entry, as on GitHub with real artifacts (test/e2e/run.sh).
  bash test/e2e/run.sh --artifacts standins --ram 1024 >"$results/e2e.log" 2>&1 || s=1
  return "$s"
}

lane_b() {
  local s=0
  vm_suites vm-b -- __tests__/vm/infect.test.ts __tests__/vm/deploy.test.ts \
    __tests__/vm/described.test.ts || s=1
  # The in-place path where kexec is impossible: the nspawn container VPS.
  vm_suites ct container -- __tests__/vm/infect.test.ts || s=1
  # The harness's own tests that boot no VM (all of them: npm run test:vps; ci.yml on KVM).
  bash test/vps/tests/run-all.sh --quick 2>"$results/harness.log" || s=1
  return "$s"
}

# run_lane NAME: the lane's output to its log, its time and status to the main log.
run_lane() {
  local t0=$SECONDS s=0
  case $1 in
    a) lane_a >"$results/lane-a.log" 2>&1 || s=1 ;;
    b) lane_b >"$results/lane-b.log" 2>&1 || s=1 ;;
  esac
  echo "test: lane $1 $([[ $s == 0 ]] && echo passed || echo FAILED) in $((SECONDS - t0)) s" >&2
  return "$s"
}

if [ "${VPS_TESTS:-1}" = 1 ]; then
  # Built once, before two lanes could race to build them: the guest image and the stand-ins.
  test/vps/vps image >/dev/null
  test/vps/vps standins --ballast 0 --json >/dev/null
  if [ "${TEST_LANES:-2}" = 1 ]; then
    run_lane a || status=1
    run_lane b || status=1
  else
    set -m
    run_lane a &
    lanes+=($!)
    sleep 5 # the two VMs boot one after the other
    run_lane b &
    lanes+=($!)
    set +m
    for pid in "${lanes[@]}"; do wait "$pid" || status=1; done
    lanes=()
  fi
  # A log a lane never got to write is no reason to stop before the count.
  for lane in a b; do
    echo "=== lane $lane"
    cat "$results/lane-$lane.log" 2>/dev/null || true
    [[ $lane != a ]] || cat "$results/e2e.log" 2>/dev/null || true
    [[ $lane != b ]] || cat "$results/harness.log" 2>/dev/null || true
  done
fi

# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const fs = require("fs");
  const [hostJson, vmA, vmB, ctJson, harnessLog, e2eLog, status] = process.argv.slice(1);
  let passed = 0, failed = 0;
  for (const f of [hostJson, vmA, vmB, ctJson]) {
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
 ' "$results/host.json" "$results/vm-a.json" "$results/vm-b.json" "$results/ct.json" "$results/harness.log" "$results/e2e.log" "$status"
exit "$status"
