#!/usr/bin/env bash
# scripts/peers/vendure/down.sh DIR [--wipe] — stops the Vendure started by up.sh DIR; keeps its
# database unless --wipe (then the next up.sh starts from an empty, freshly seeded database; sql.js
# rewrites the whole database file on every transaction, so a peer that has grown large gets slow).
# Takes the same lock as up.sh so it never stops a server another process is starting.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [--wipe]" >&2; exit 2; }
WIPE=${2:-}
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
wipe() { if [ "$WIPE" = --wipe ]; then rm -f "$DIR/vendure.sqlite" "$DIR/seeded"; echo "[vendure-down] database wiped"; fi; }
[ -f "$DIR/vendure.pid" ] || { echo "[vendure-down] not running ($DIR)"; wipe; exit 0; }
PID=$(cat "$DIR/vendure.pid")
if kill -0 "$PID" 2>/dev/null; then
  kill "$PID"
  for _ in $(seq 1 80); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
fi
rm -f "$DIR/vendure.pid"
echo "[vendure-down] stopped pid $PID"
wipe
