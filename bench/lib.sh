# shellcheck shell=bash
# What the bench scripts share (sourced, not run): reading JSON, the test network's counters,
# timing, medians, stamped logs.

# json_get JSON KEY...: the value at that path of a JSON text (`vps up --json`, `standins --json`)
json_get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); [d:=d[k] for k in sys.argv[2:]]; print(d)' "$@"; }
# json_file_get FILE KEY...: the same, read from a file
json_file_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d:=d[k] for k in sys.argv[2:]]; print(d)' "$@"; }

# txbytes NETNS LINK: bytes LINK (the test network's side of the guest's NIC: tap0 for the VM,
# vh0 for the container) has transmitted, i.e. what the guest received
txbytes() { ip -n "$1" -j -s link show "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }

# since T0 (an $EPOCHREALTIME or `date +%s.%N`): seconds elapsed, one decimal
since() { awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f", t1 - t0 }'; }
# since2 T0: the same with two decimals (runs of about a second)
since2() { awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.2f", t1 - t0 }'; }

# median: the median of the numbers on stdin (spaces or newlines between them), one decimal;
# n/a for none
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; else printf "n/a" }'; }

# stamp T0: each line of stdin prefixed with the seconds since T0 when it arrived (one process, so
# the stamps do not lag behind a fast writer), then written to stdout
stamp() {
  python3 -u -c '
import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(b"%7.3f " % (time.time() - t0) + line)
    sys.stdout.buffer.flush()
' "$1"
}
