#!/bin/bash
# Timestamp each line of a growing log: serial-ts.sh RAW OUT. Started with setsid by the harness
# and stopped by killing its process group (killing only this PID would leave tail behind).
set -euo pipefail
tail -n +1 -F "$1" 2>/dev/null | while IFS= read -r l; do
  printf '%s %s\n' "$EPOCHREALTIME" "${l%$'\r'}"
done >> "$2"
