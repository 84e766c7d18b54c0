#!/bin/bash
# The deploy stand-ins on a VM (about 2-3 min under TCG, so not in run-all.sh): the nixos-rebuild
# stand-in (test/standins/bin) switches the Debian guest (with /etc/NIXOS) through the toplevel
# variants of test/standins/make-flake.sh's flake, over pinned NIX_SSHOPTS inside the run's netns:
#   ok -> ok2 (one package changes), exit4 (exit 1, the failed unit listed), back to ok2 by
#   --store-path (failed units forgotten), cut-sshd (exit 0, new ssh connections refused, an open
#   session survives, a rollback from a transient unit brings sshd back), boot + reboot
#   (REBOOT=1 only: the profile is activated at boot).
# Usage: deploy-standin.sh [SYSTEM_BALLAST]   (default 0). Prints "RESULT key=value" timings.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
sb=${1:-0}
root=$(cd "$T_DIR/../../.." && pwd)
work=$(mktemp -d)
flake=$("$root/test/standins/make-flake.sh" "$work/flake" --system-ballast "$sb")
s=$("$VPS" standins --ballast "$sb" --json)
v() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["variants"][sys.argv[2]])' "$s" "$1"; }
ok=$(v ok) ok2=$(v ok2) exit4=$(v exit4) cut=$(v cut-sshd)

j=$("$VPS" up --json)
rd=$(json_get "$j" runDir) ns=$(json_get "$j" netns) target=$(json_get "$j" target)
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
report() { printf 'RESULT %s=%s\n' "$1" "$2" | tee -a "$rd/results" >&2; }
report systemBallast "$sb"
g "$rd" 'touch /etc/NIXOS'

export NIX_SSHOPTS="-o UserKnownHostsFile=$rd/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i $rd/client_ed25519 -o BatchMode=yes -p 22"
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes'
export NIXOS_REBUILD_STANDIN_LOG=$work/rebuild.log
# rebuild OUT ARGS...: the stand-in, first on PATH, inside the netns; stdout+stderr into OUT; sets rc
rebuild() {
  local out=$1 t0; shift
  t0=$(now); rc=0
  ip netns exec "$ns" env PATH="$root/test/standins/bin:$PATH" nixos-rebuild "$@" > "$out" 2>&1 || rc=$?
  secs=$(since "$t0")
}
current() { g "$rd" 'readlink /run/current-system'; }

rebuild "$work/ok.out" switch --flake "$flake#ok" --target-host "$target"
[[ $rc == 0 ]] || { cat "$work/ok.out" >&2; fail "switch ok: exit $rc"; }
report firstSwitchSeconds "$secs (ok, system ballast $sb)"
expect_eq "$(current)" "$ok" "current-system after switch ok"
expect_eq "$(g "$rd" 'readlink /run/booted-system; readlink -f /nix/var/nix/profiles/system' | tr '\n' ' ')" "$ok $ok " "booted-system, system profile"
expect_eq "$(g "$rd" 'systemctl is-enabled vps-standin-activate.service')" enabled "the stand-in boot entry"

rebuild "$work/ok2.out" switch --flake "$flake#ok2" --target-host "$target"
[[ $rc == 0 ]] || { cat "$work/ok2.out" >&2; fail "switch ok2: exit $rc"; }
report switchSeconds "$secs (ok -> ok2)"
expect_eq "$(current)" "$ok2" "current-system after switch ok2"
expect_eq "$(g "$rd" '/run/current-system/sw/bin/hello')" "Hello, world! (hello-standin 2.0, a vps-nixos stand-in)" "hello"
expect_eq "$(grep -c '^copying path' "$work/ok2.out")" 2 "paths copied for ok -> ok2 (hello-standin-2.0 + the toplevel)"

rebuild "$work/exit4.out" switch --flake "$flake#exit4" --target-host "$target"
expect_eq "$rc" 1 "exit status of switch exit4"
grep -qx 'warning: the following units failed: vps-standin-broken.service' "$work/exit4.out" || fail "no failed-units line"
grep -qx 'warning: error(s) occurred while switching to the new configuration' "$work/exit4.out" || fail "no error(s) line"
ok "switch-to-configuration's failed-units line and nixos-rebuild's warning"
expect_eq "$(current)" "$exit4" "current-system after switch exit4"
expect_eq "$(g "$rd" 'systemctl --failed --no-legend --plain | cut -d" " -f1')" vps-standin-broken.service "systemctl --failed"

rebuild "$work/back.out" switch --store-path "$ok2" --target-host "$target"
[[ $rc == 0 ]] || { cat "$work/back.out" >&2; fail "switch --store-path ok2: exit $rc"; }
expect_eq "$(current)" "$ok2" "current-system after switch --store-path ok2"
expect_eq "$(g "$rd" 'systemctl --failed --no-legend --plain | wc -l')" 0 "failed units after switching back"

# cut-sshd: a rollback watcher (the old generation's switch, from a transient unit) is armed first
g "$rd" "systemd-run --quiet --on-active=35 --timer-property=AccuracySec=100ms --unit=deploy-standin-rollback $ok2/bin/switch-to-configuration switch"
# an ssh session that stays open across the switch: it waits for cut-sshd to be current, then answers
g "$rd" "for i in \$(seq 30); do [ \$(readlink /run/current-system) = $cut ] && break; sleep 1; done; sleep 2; echo survived; readlink /run/current-system" \
  > "$work/session.out" 2>&1 &
session=$!
sleep 2
rebuild "$work/cut.out" switch --flake "$flake#cut-sshd" --target-host "$target"
[[ $rc == 0 ]] || { cat "$work/cut.out" >&2; fail "switch cut-sshd: exit $rc"; }
t_cut=$(now)
err=$(g "$rd" true 2>&1) && fail "a new ssh connection still works after cut-sshd"
[[ $err == *"Connection refused"* ]] || fail "new ssh after cut-sshd: expected 'Connection refused', got: $err"
ok "new ssh connections are refused after cut-sshd"
wait "$session" || true
expect_eq "$(tr '\n' ' ' < "$work/session.out")" "survived $cut " "the ssh session open during cut-sshd (and current-system)"
wait_for "$rd" 120 "$ok2" 'readlink /run/current-system' >/dev/null
report sshBackAfterCutSeconds "$(since "$t_cut") (rollback timer armed 35 s before)"
expect_eq "$(g "$rd" 'systemctl is-active ssh.service')" active "ssh.service after the rollback"

expect_eq "$(grep -c '"argv"' "$NIXOS_REBUILD_STANDIN_LOG")" 5 "argv log lines"

if [[ ${REBOOT:-0} == 1 ]]; then
  rebuild "$work/boot.out" boot --flake "$flake#ok" --target-host "$target"
  [[ $rc == 0 ]] || { cat "$work/boot.out" >&2; fail "boot ok: exit $rc"; }
  expect_eq "$(current)" "$ok2" "current-system after boot ok (unchanged)"
  old_boot=$(g "$rd" cat /proc/sys/kernel/random/boot_id)
  g "$rd" 'systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot >/dev/null 2>&1'
  probe="b=\$(cat /proc/sys/kernel/random/boot_id); [ \"\$b\" = $old_boot ] && echo old || echo \"\$(readlink /run/current-system) \$(readlink /run/booted-system)\""
  wait_for "$rd" 300 "$ok $ok" "$probe" >/dev/null
  ok "after boot ok + reboot: current-system = booted-system = ok"
fi

"$VPS" down --run-dir "$rd"
trap 'rm -rf "$work"' EXIT
assert_clean "$rd"
