#!/usr/bin/env bash
# scripts/peers/vendure/down.sh DIR [--wipe] — stops the Vendure started by up.sh DIR; keeps its
# database unless --wipe (then the next up.sh starts from an empty, freshly seeded database; sql.js
# rewrites the whole database file on every transaction, so a peer that has grown large gets slow).
# With --wipe, a peer that up.sh ran on PostgreSQL (DATABASE_URL, kept in DIR/database-url) has its
# database dropped (the sql.js file, if any, is removed too).
# Takes the same lock as up.sh so it never stops a server another process is starting.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [--wipe]" >&2; exit 2; }
WIPE=${2:-}
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
wipe() {
  [ "$WIPE" = --wipe ] || return 0
  rm -f "$DIR/vendure.sqlite" "$DIR/seeded"
  if [ -f "$DIR/database-url" ]; then
    local url base db
    url=$(cat "$DIR/database-url"); base=${url%%\?*}; db=${base##*/}
    if [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      psql "${base%/*}/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
      echo "[vendure-down] PostgreSQL database $db dropped"
    fi
    rm -f "$DIR/database-url" "$DIR/backend"
  fi
  echo "[vendure-down] database wiped"
}
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
