#!/usr/bin/env bash
# scripts/peers/vendure/down.sh DIR — stops the Vendure started by up.sh DIR (keeps its database).
# Takes the same lock as up.sh so it never stops a server another process is starting.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
[ -f "$DIR/vendure.pid" ] || { echo "[vendure-down] not running ($DIR)"; exit 0; }
PID=$(cat "$DIR/vendure.pid")
if kill -0 "$PID" 2>/dev/null; then
  kill "$PID"
  for _ in $(seq 1 80); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
fi
rm -f "$DIR/vendure.pid"
echo "[vendure-down] stopped pid $PID"
