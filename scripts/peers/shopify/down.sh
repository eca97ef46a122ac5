#!/usr/bin/env bash
# scripts/peers/shopify/down.sh DIR — stops the emulator up.sh DIR started (its shop is in memory: the next
# up.sh starts from the seed). Takes the same lock as up.sh so it never stops one that is starting.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
[ -f "$DIR/emulator.pid" ] || { echo "[shopify-down] not running ($DIR)"; exit 0; }
PID=$(cat "$DIR/emulator.pid")
if kill -0 "$PID" 2>/dev/null; then
  kill "$PID"
  for _ in $(seq 1 40); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
fi
rm -f "$DIR/emulator.pid"
echo "[shopify-down] stopped pid $PID"
