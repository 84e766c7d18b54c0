#!/usr/bin/env bash
# The end-to-end test, here and on GitHub (issue 22): one driver, two sources of artifacts.
#   bash test/e2e/run.sh --artifacts standins|real --ram MiB [--report DIR] [--bench N]
# Boots the test VPS (Debian, static IP, no swap; test/vps), then runs the action entry as the
# runner does (dist/main, then dist/post: INPUT_* variables, command files, its own RUNNER_TEMP;
# test/e2e/action-step.mjs) four times, and checks each from outside over the pinned host key:
#   install    flake#BASE with confirm-wipe /dev/vda: kexec, install, reboot, deploy; the host runs BASE
#   no-change  the same again: changed=false, nothing rebooted, the same system
#   change     flake#CHANGED: changed=true, the host runs CHANGED
#   rollback   flake#KILLS (its sshd does not come back): the run fails by itself, rolled-back=true,
#              the host runs CHANGED again and answers with the same pinned key
# --artifacts standins: the stand-ins of test/STANDINS.md (ballast 0; flake from
#   test/standins/make-flake.sh: ok, ok2, cut-sshd), offline, the stand-in nixos-rebuild first on
#   PATH. Runs here.
# --artifacts real: our installer built from ./nix (nix build ./nix#kexec-installer) and a real
#   NixOS system from test/e2e/flake (our module, disko, the host module facts-to-nix generates
#   from the probe): e2e, e2e-changed, e2e-kills-sshd. Needs Nix with flakes and the internet
#   (GitHub's runners: .github/workflows/e2e.yml); builds happen before the action runs, outside
#   the VPS's network namespace, so the action finds them in the store.
# --bench N (issue 18's measure): then, N times on the same host, an unchanged deploy and a
#   one-package change by the action against `nixos-rebuild switch --flake … --target-host` alone
#   (same flake, key and pin): ours main + post against nixos-rebuild's whole run, each checked
#   from outside, with the bytes the VPS received; the medians and ratios go to the report and to
#   stdout. nixos-rebuild is, with real artifacts, the one of the configuration's own nixpkgs (the
#   real one, activating a real NixOS); with stand-ins, the stand-in first on PATH; E2E_REBUILD=CMD
#   replaces either. When it fails, the bench stops there and says so (it is the yardstick, not
#   what is tested).
# Needs root (network namespaces). VPS_ACCEL=kvm makes the VM use KVM (test/vps/lib/vm.sh).
# With --report DIR: DIR/summary.md (steps, seconds, sizes) and DIR/sizes.json. The last line on
# stdout is
#   e2e: ok <artifacts> <ram> MiB: install N s, no-change N s, change N s, rollback N s
# (with --bench, after a line `bench: …` with the medians) and the exit status is 0 only then.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
VPS=test/vps/vps

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
failed="" leaked=""
die() { failed=$*; printf 'e2e: %s\n' "$*" >&2; exit 1; }
log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

artifacts="" ram="" report="" bench=0
while (($#)); do
  case $1 in
    --artifacts) (($# >= 2)) || usage; artifacts=$2; shift 2 ;;
    --ram) (($# >= 2)) || usage; ram=$2; shift 2 ;;
    --report) (($# >= 2)) || usage; report=$2; shift 2 ;;
    --bench) (($# >= 2)) || usage; bench=$2; shift 2 ;;
    -h|--help) usage ;;
    *) printf 'e2e: unknown argument %s\n' "$1" >&2; usage ;;
  esac
done
[[ $artifacts == standins || $artifacts == real ]] ||
  die "--artifacts: '$artifacts' is not standins or real"
if ! [[ $ram =~ ^[0-9]+$ ]] || ((ram < 256)); then
  die "--ram: '$ram' is not MiB (a number, at least 256)"
fi
[[ $bench =~ ^[0-9]+$ ]] || die "--bench: '$bench' is not a number of runs (0 for none)"
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, tap): run it with sudo"
if [[ $artifacts == real ]]; then
  command -v nix >/dev/null || die "--artifacts real needs Nix with flakes (and the internet)"
fi
[[ -f dist/main/index.js && -f dist/post/index.js ]] || npm run build >/dev/null

t_start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/vps-nixos-e2e.XXXXXX")
chmod 700 "$work"
rd="$work/vps"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local status=$?
  [[ -z $report ]] || write_report "$status" || true
  [[ ! -e $rd/slot ]] || "$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true
  # E2E_KEEP=1: keep the work dir (the steps' logs, the flake) to look at; it holds the VM's key.
  if [[ ${E2E_KEEP:-0} == 1 ]]; then echo "e2e: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k] if isinstance(d, dict) else d[int(k)]
print("" if d is None else (json.dumps(d) if isinstance(d, (dict, list)) else d))' "$@"; }
outside() { "$VPS" ssh --run-dir "$rd" -- "$@"; }

# ---- the report (also when a step failed: the rows so far and what failed) -----------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
nar_size() { nixc path-info -S --json "$1" | python3 -c 'import json,sys
d=json.load(sys.stdin); d=d if isinstance(d, list) else [dict(v, path=k) for k, v in d.items()]
print(d[0]["closureSize"])'; }
declare -A what=(
  [install]="kexec, installed on /dev/vda, rebooted, runs it, same pinned key"
  [no-change]="changed=false, no reboot, the same system"
  [change]="changed=true, runs it"
  [rollback]="the run failed by itself, rolled-back=true, runs the previous system, same pinned key"
)
declare -A step_config=([install]=base [no-change]=base [change]=changed [rollback]=kills)
declare -A config=() top=() secs=()
# shellcheck disable=SC2317 # called by cleanup
write_report() {
  local status=$1 s tarball_bytes=null system_bytes=null seconds=() ok=false
  [[ $status != 0 ]] || ok=true
  mkdir -p "$report"
  [[ -z ${tarball:-} || ! -f ${tarball:-} ]] || tarball_bytes=$(stat -c %s "$tarball")
  [[ -z ${top[base]:-} ]] || system_bytes=$(nar_size "${top[base]}" 2>/dev/null || echo null)
  local INITRD_BYTES=null INITRD_UNPACKED_BYTES=null KERNEL_BYTES=null
  if [[ $artifacts == real && -n ${installer:-} && -f $installer/sizes.env ]]; then
    # INITRD_BYTES, INITRD_UNPACKED_BYTES, KERNEL_BYTES (nix/kexec-installer/module.nix)
    # shellcheck disable=SC1091
    . "$installer/sizes.env"
  fi
  for s in install no-change change rollback; do seconds+=("\"$s\": ${secs[$s]:-null}, "); done
  printf '{"artifacts": "%s", "ramMiB": %s, "ok": %s, "kexecTarballBytes": %s, "initrdBytes": %s, "initrdUnpackedBytes": %s, "kernelBytes": %s, "systemClosureBytes": %s, "seconds": {%s"total": %s}}\n' \
    "$artifacts" "$ram" "$ok" "$tarball_bytes" "$INITRD_BYTES" "$INITRD_UNPACKED_BYTES" \
    "$KERNEL_BYTES" "$system_bytes" "$(printf '%s' "${seconds[@]}")" "$((SECONDS - t_start))" \
    >"$report/sizes.json"
  {
    echo "### End to end: $artifacts artifacts, ${ram} MiB${VPS_ACCEL:+ ($VPS_ACCEL)}: $([[ $ok == true ]] && echo ok || echo FAILED)"
    echo
    [[ -z $failed ]] || printf '**Failed:** %s\n\n' "${failed//|/\\|}"
    echo "| step | configuration | seconds | checked from outside |"
    echo "|---|---|---:|---|"
    for s in install no-change change rollback; do
      [[ -n ${secs[$s]:-} ]] || continue
      echo "| $s | \`${config[${step_config[$s]}]}\` | ${secs[$s]} | ${what[$s]} |"
    done
    echo
    echo "| artifact | size |"
    echo "|---|---:|"
    [[ $tarball_bytes == null ]] || echo "| kexec tarball | $(mib "$tarball_bytes") |"
    [[ $INITRD_BYTES == null ]] || echo "| installer initrd (compressed) | $(mib "$INITRD_BYTES") |"
    [[ $INITRD_UNPACKED_BYTES == null ]] || echo "| installer initrd (unpacked) | $(mib "$INITRD_UNPACKED_BYTES") |"
    [[ $KERNEL_BYTES == null ]] || echo "| kernel | $(mib "$KERNEL_BYTES") |"
    [[ $system_bytes == null ]] || echo "| system closure (\`${config[base]:-}\`) | $(mib "$system_bytes") |"
    if [[ -s $work/bench.tsv ]]; then
      echo
      echo "#### The everyday path against nixos-rebuild alone (--bench $bench)"
      echo
      echo "Ours is the action's main and post steps; nixos-rebuild alone is \`$rebuild switch --no-reexec --option eval-cache false --flake … --target-host\` (no evaluation cache, as for a pushed commit), same key and pin. Bytes: what the VPS received on its link."
      echo
      echo "| run | seconds | bytes received |"
      echo "|---|---:|---:|"
      awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$work/bench.tsv"
      echo
      [[ -z ${bench_line:-} ]] || echo "Medians: $bench_line."
    fi
    echo
    echo "Whole run: $((SECONDS - t_start)) s."
  } >"$report/summary.md"
  # Each step's log, summary and outputs, for a failure read elsewhere (never a step whose output
  # held the key).
  local d
  for d in "$work"/steps/*/; do
    [[ -d $d && $(basename "$d") != "$leaked" ]] || continue
    mkdir -p "$report/steps/$(basename "$d")"
    cp "$d"/{log.txt,summary.md,outputs.json,result.json} "$report/steps/$(basename "$d")/" 2>/dev/null || true
  done
}

# ---- the VPS -------------------------------------------------------------------------------
# A real NixOS boots from its own GRUB after the install: the VM's reboots come from the disk then
# (test/vps/lib/vm-supervise.sh). The stand-in system is booted by the harness's kernel, as always.
[[ $artifacts == standins ]] || export VPS_BOOT=disk
log "booting the test VPS: ${ram} MiB${VPS_ACCEL:+, accel $VPS_ACCEL}${VPS_BOOT:+, reboots from ${VPS_BOOT}}"
mkdir -p "$rd"
"$VPS" up --ram "$ram" --run-dir "$rd" --json >"$work/vps.json"
target=$(json "$work/vps.json" target)
key=$(json "$work/vps.json" sshPrivateKeyFile)
known_hosts=$(json "$work/vps.json" knownHostsFile)
fpr=$(json "$work/vps.json" hostKeyFingerprint)
log "up in $(json "$work/vps.json" bootToSshSeconds) s: $target ($fpr)"
route=$(outside ip -o -4 route show default)
dev=$(awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' <<<"$route")
gw=$(awk '{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}' <<<"$route")
addr=$(outside ip -o -4 addr show dev "$dev" | awk '{print $4; exit}')
pubkey=$(ssh-keygen -y -f "$key")

# ---- the artifacts -------------------------------------------------------------------------
step_env=()
if [[ $artifacts == standins ]]; then
  st=$("$VPS" standins --ballast 0 --json | tail -n 1)
  printf '%s' "$st" >"$work/standins.json"
  tarball=$(json "$work/standins.json" kexecTarball)
  flake=$(test/standins/make-flake.sh "$work/flake" --static "$dev" "$addr" "$gw" \
    --authorized-key "$pubkey")
  config=([base]=ok [changed]=ok2 [kills]=cut-sshd)
  nix_config=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes'
  step_env=(PATH="$root/test/standins/bin:$PATH" NIX_CONFIG="$nix_config")
  nixc() { NIX_CONFIG="$nix_config" nix "$@"; }
else
  log "building our installer (./nix#kexec-installer)"
  installer=$(nix build -L --no-link --print-out-paths "path:$root/nix#kexec-installer")
  tarball=$(find "$installer" -maxdepth 1 -name '*.tar.gz' | head -n 1)
  [[ -f $tarball ]] || die "no tarball in $installer"
  log "probing the VPS for the host module (facts-to-nix)"
  "$VPS" exec --run-dir "$rd" -- node dist/cli/index.js probe --target "$target" \
    --ssh-private-key-file "$key" --known-hosts-file "$known_hosts" --json >"$work/facts.json"
  cp -r test/e2e/flake "$work/flake"
  chmod -R u+w "$work/flake"
  node dist/cli/index.js facts-to-nix --facts "$work/facts.json" --host "$target" \
    --out "$work/flake/host.nix" >/dev/null
  printf '%s\n' "$pubkey" >"$work/flake/authorized_keys"
  # Our own flake, as this checkout has it (not the one on GitHub at some tag).
  nix flake lock "path:$work/flake" --override-input vps-nixos "path:$root/nix"
  flake="path:$work/flake"
  config=([base]=e2e [changed]=e2e-changed [kills]=e2e-kills-sshd)
  nixc() { nix "$@"; }
fi
for k in base changed kills; do
  # Realised here, outside the VPS's netns (no internet there): the action finds them in the store.
  top[$k]=$(nixc build --no-link --json "$flake#nixosConfigurations.${config[$k]}.config.system.build.toplevel" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
  log "${config[$k]}: ${top[$k]}"
done
# No nixos-rebuild is needed: the deploy copies the system built here and switches to it itself
# (src/deploy/switch.ts); nixos-rebuild runs only with build-host. The bench compares with it:
# the configuration's own (pinned, built here with the internet), or the stand-in on PATH.
rebuild=${E2E_REBUILD:-nixos-rebuild}
if ((bench > 0)) && [[ $artifacts == real && -z ${E2E_REBUILD:-} ]]; then
  rebuild=$(nixc build --no-link --print-out-paths "$flake#nixosConfigurations.${config[base]}.pkgs.nixos-rebuild")/bin/nixos-rebuild
  log "bench: nixos-rebuild alone is $rebuild"
fi

# ---- the steps -----------------------------------------------------------------------------
# The step's last lines go to stderr first (the work dir is removed at exit unless E2E_KEEP=1);
# the runner's ::add-mask:: lines, which carry the test key, are left out.
fail() {
  if [[ -f $work/steps/$1/log.txt ]]; then
    echo "e2e: the last lines of step $1's log:" >&2
    grep -v '^::add-mask::' "$work/steps/$1/log.txt" | tail -n 40 | sed 's/^/  | /' >&2 || true
  fi
  die "$1: $2 (log: $work/steps/$1/log.txt)"
}
# step NAME CONFIG [extra inputs as JSON object members]
step() {
  local name=$1 cfgname=$2 extra=${3:-} dir="$work/steps/$1"
  mkdir -p "$dir"
  cat >"$dir/inputs.json" <<EOF
{"target": "$target", "ssh-private-key-file": "$key", "known-hosts-file": "$known_hosts",
 "flake": "$flake#$cfgname", "kexec-tarball": "$tarball", "cache": "false"${extra:+, $extra}}
EOF
  log "$name: the action with flake #$cfgname"
  "$VPS" exec --run-dir "$rd" -- env "${step_env[@]}" node test/e2e/action-step.mjs "$dir" "$dir/inputs.json" >"$dir/stdout"
  secs[$name]=$(json "$dir/result.json" seconds)
  log "$name: exit $(json "$dir/result.json" code) in ${secs[$name]} s"
  # The post step ran and left no key material behind.
  [[ $(json "$dir/result.json" postCode) == 0 ]] || fail "$name" "the post step failed"
  if grep -rlsF 'PRIVATE KEY' "$dir/runner-temp" >/dev/null; then fail "$name" "key material left in RUNNER_TEMP"; fi
  # The key's own lines (not the armour, not the first base64 line every OpenSSH key shares).
  # ::add-mask:: lines are the runner's: it consumes them, they never reach the log.
  if grep -hv '^::add-mask::' "$dir/log.txt" "$dir/summary.md" "$dir/outputs.json" |
    grep -qF -f <(grep -v -e '^-----' -e '^b3BlbnNzaC1rZXktdjE' "$key"); then
    leaked=$name
    fail "$name" "the private key reached the log, the summary or the outputs"
  fi
}
out() { json "$work/steps/$1/outputs.json" "$2"; }
code() { json "$work/steps/$1/result.json" code; }
running() { outside readlink -f /run/current-system; }
boot_id() { outside cat /proc/sys/kernel/random/boot_id; }
expect() { [[ $2 == "$3" ]] || fail "$1" "$4: got '$2', want '$3'"; }
pinned() {
  # A new connection with only the pinned key accepted (the harness's known_hosts): same host key.
  local got; got=$("$VPS" ssh --run-dir "$rd" -- cat /etc/ssh/ssh_host_ed25519_key.pub | ssh-keygen -lf - | awk '{print $2}')
  expect "$1" "$got" "$fpr" "host key over a pinned connection"
}

boot0=$(boot_id)
step install "${config[base]}" '"confirm-wipe": "/dev/vda"'
expect install "$(code install)" 0 "exit status"
expect install "$(out install method)" kexec "method"
expect install "$(running)" "${top[base]}" "the running system"
expect install "$(outside 'findmnt -no SOURCE / | sed "s/[0-9]*$//"')" /dev/vda "root file system on"
[[ $(boot_id) != "$boot0" ]] || fail install "the host did not reboot"
pinned install
# Each phase ran and says what it did: the installer's bytes, the checked and registered closure.
phases_ok=$(python3 - "$work/steps/install/outputs.json" "$(stat -c %s "$tarball")" <<'PY'
import json, re, sys
phases = json.loads(json.load(open(sys.argv[1]))["phases"])
by = {p["name"]: p for p in phases}
want = ["prep", "kexec", "installer-prep", "install", "reboot"]
problems = []
if [(p["name"], p["status"]) for p in phases] != [(n, "done") for n in want]:
    problems.append("phases " + ", ".join(f'{p["name"]} {p["status"]}' for p in phases))
if by.get("kexec", {}).get("bytesSent") != int(sys.argv[2]):
    problems.append(f'kexec sent {by.get("kexec", {}).get("bytesSent")} B, the tarball is {sys.argv[2]} B')
if not re.search(r"partitioned /dev/vda.*NAR hashes checked \([\d.]+ s\) and registered by the closure's Nix", by.get("install", {}).get("detail") or ""):
    problems.append("install detail: " + (by.get("install", {}).get("detail") or "")[:300])
problems += [f'{p["name"]}: no peak memory' for p in phases if not p.get("peakMemBytes")]
print("; ".join(problems) or "ok")
PY
)
expect install "$phases_ok" ok "the phases"
boot1=$(boot_id)

step no-change "${config[base]}" '"confirm-wipe": "/dev/vda"'
expect no-change "$(code no-change)" 0 "exit status"
expect no-change "$(out no-change method)" deploy-only "method"
expect no-change "$(out no-change changed)" false "changed"
expect no-change "$(out no-change system-path)" "${top[base]}" "system-path"
expect no-change "$(out no-change previous-system-path)" "${top[base]}" "previous-system-path"
expect no-change "$(running)" "${top[base]}" "the running system"
expect no-change "$(boot_id)" "$boot1" "boot id (no reboot)"
# The plan decided: no bootstrap stage, no installer work, one headline saying nothing changed.
head -n 1 "$work/steps/no-change/summary.md" | grep -q '^\*\*no change\*\*' ||
  fail no-change "the summary's headline does not say no change: $(head -n 1 "$work/steps/no-change/summary.md")"
if grep -q 'kexec tarball:' "$work/steps/no-change/log.txt"; then fail no-change "installer work on a deploy"; fi
grep -qF "nothing to bootstrap: the host runs NixOS ${top[base]}" "$work/steps/no-change/summary.md" ||
  fail no-change "the summary does not say why there is no bootstrap"

step change "${config[changed]}"
expect change "$(code change)" 0 "exit status"
expect change "$(out change changed)" true "changed"
expect change "$(out change rolled-back)" false "rolled-back"
expect change "$(running)" "${top[changed]}" "the running system"

# 20 s, not the default: the guard is what is tested here, not its patience.
step rollback "${config[kills]}" '"confirm-timeout": "20"'
[[ $(code rollback) != 0 ]] || fail rollback "a configuration that kills sshd must fail the run"
expect rollback "$(out rollback rolled-back)" true "rolled-back"
# Nothing could confirm: the target rolled itself back when the 20 s ran out, and the log says so.
grep -q 'rolled back by the target itself' "$work/steps/rollback/log.txt" ||
  fail rollback "the log does not say the target rolled itself back"
grep -q 'did not confirm within 20 s' "$work/steps/rollback/log.txt" ||
  fail rollback "the log does not say the new system did not confirm within 20 s"
expect rollback "$(running)" "${top[changed]}" "the running system after the rollback"
pinned rollback

# ---- the everyday path against nixos-rebuild alone (--bench N) -----------------------------
# The host runs CHANGED (the rollback put it back). Each round: ours unchanged (CHANGED again),
# nixos-rebuild alone unchanged (CHANGED again), ours CHANGED → BASE, nixos-rebuild alone
# BASE → CHANGED: one package apart, both systems already in the host's store after the first
# round (neither copies more than the other). nixos-rebuild runs at its fastest: --no-reexec (no
# build of the configuration's own nixos-rebuild to re-run itself with first); and with
# --option eval-cache false, as on a runner deploying a pushed commit (a new flake fingerprint,
# an empty evaluation cache): the builds above filled that cache, which ours does not read, and a
# cached `nix build` of the attribute skips the evaluation both sides pay in real use. Our runs are
# checked as the steps above are (a failure fails the test); nixos-rebuild is the yardstick, not
# what is tested: when it fails, or leaves the host on another system, the bench stops there and
# the report says so.
netns=$(json "$work/vps.json" netns)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
received() { txbytes "$netns" tap0; }
# alone NAME CONFIG: nixos-rebuild switch alone, same key and pin, timed inside the netns
alone() {
  local name=$1 cfgname=$2 dir="$work/steps/$1" rc=0
  mkdir -p "$dir"
  log "$name: nixos-rebuild switch --no-reexec --option eval-cache false --flake #$cfgname --target-host $target"
  # shellcheck disable=SC2016 # expanded by the inner bash
  "$VPS" exec --run-dir "$rd" -- env "${step_env[@]}" \
    NIX_SSHOPTS="-i $key -o UserKnownHostsFile=$known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes" \
    bash -c 'TIMEFORMAT=%R; { time "${@:2}" </dev/null >"$1/log.txt" 2>&1; } 2>"$1/seconds"' _ "$dir" \
    "$rebuild" switch --no-reexec --option eval-cache false --flake "$flake#$cfgname" \
    --target-host "$target" || rc=$?
  secs[$name]=$(tail -n 1 "$dir/seconds")
  return "$rc"
}
# measured KIND NAME CONFIG KEY: one run of ours (the action, main + post) or alone, with what
# the VPS received (before the checks from outside), appended to $work/bench.tsv; the host must
# end on top[KEY]. A failed nixos-rebuild alone sets alone_failed and returns 1.
measured() {
  local kind=$1 name=$2 cfgname=$3 rx0 rx seconds rc=0 now
  rx0=$(received)
  if [[ $kind == ours* ]]; then
    step "$name" "$cfgname"
    rx=$(($(received) - rx0))
    expect "$name" "$(code "$name")" 0 "exit status"
    expect "$name" "$(running)" "${top[$4]}" "the running system"
    seconds=$(awk -v a="$(json "$work/steps/$name/result.json" mainSeconds)" \
      -v b="$(json "$work/steps/$name/result.json" postSeconds)" 'BEGIN { printf "%.3f", a + b }')
  else
    alone "$name" "$cfgname" || rc=$?
    rx=$(($(received) - rx0))
    now=$(running)
    if ((rc != 0)) || [[ $now != "${top[$4]}" ]]; then
      alone_failed="$name: nixos-rebuild exited $rc, the host runs $now"
      echo "e2e: bench stopped ($alone_failed); the last lines of its log:" >&2
      tail -n 30 "$work/steps/$name/log.txt" | LC_ALL=C tr -d '\000-\010\013-\037\177' | sed 's/^/  | /' >&2 || true
      return 1
    fi
    seconds=${secs[$name]}
  fi
  printf '%s\t%s\t%s\n' "$kind" "$seconds" "$rx" >>"$work/bench.tsv"
}
alone_failed=""
if ((bench > 0)); then
  : >"$work/bench.tsv"
  for ((i = 1; i <= bench; i++)); do
    measured ours-unchanged "bench-$i-unchanged-ours" "${config[changed]}" changed
    expect "bench-$i-unchanged-ours" "$(out "bench-$i-unchanged-ours" changed)" false "changed"
    grep -q 'no change: the host runs' "$work/steps/bench-$i-unchanged-ours/log.txt" ||
      fail "bench-$i-unchanged-ours" "the log does not say no change"
    measured alone-unchanged "bench-$i-unchanged-alone" "${config[changed]}" changed || break
    measured ours-change "bench-$i-change-ours" "${config[base]}" base
    expect "bench-$i-change-ours" "$(out "bench-$i-change-ours" changed)" true "changed"
    measured alone-change "bench-$i-change-alone" "${config[changed]}" changed || break
  done
  bench_line=$(python3 - "$work/bench.tsv" "$alone_failed" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    kind, secs, rx = line.rstrip("\n").split("\t")
    by.setdefault(kind, []).append((float(secs), int(rx)))
med = lambda k, i: statistics.median(r[i] for r in by[k])
parts = []
for what, a, b in [("unchanged", "ours-unchanged", "alone-unchanged"), ("one-package change", "ours-change", "alone-change")]:
    if a in by and b in by:
        parts.append(f"{what}: ours {med(a, 0):.2f} s ({med(a, 1):.0f} B received), nixos-rebuild alone {med(b, 0):.2f} s ({med(b, 1):.0f} B), ratio {med(a, 0) / med(b, 0):.2f} (medians of {len(by[a])} and {len(by[b])})")
    else:
        parts.append(f"{what}: no pair measured")
print("; ".join(parts) + (f"; stopped: {sys.argv[2]}" if sys.argv[2] else ""))
PY
)
  echo "bench: $bench_line"
fi

echo "e2e: ok $artifacts $ram MiB: install ${secs[install]} s, no-change ${secs[no-change]} s, change ${secs[change]} s, rollback ${secs[rollback]} s"
