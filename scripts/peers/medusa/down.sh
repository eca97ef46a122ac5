#!/usr/bin/env bash
# scripts/peers/medusa/down.sh DIR [--wipe] — stops the Medusa started by up.sh DIR; keeps its database
# unless --wipe (then its PostgreSQL database, named in DIR/database-url, is dropped and the next up.sh
# migrates and seeds a fresh one; the npm install in DIR is kept).
# Takes the same lock as up.sh so it never stops a server another process is starting.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [--wipe]" >&2; exit 2; }
WIPE=${2:-}
[ -z "$WIPE" ] || [ "$WIPE" = --wipe ] || { echo "usage: $0 DIR [--wipe]" >&2; exit 2; }
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
wipe() {
  [ "$WIPE" = --wipe ] || return 0
  rm -f "$DIR/migrated" "$DIR/seeded" "$DIR/seed.json" "$DIR/admin-api-key" "$DIR/publishable-api-key"
  if [ -f "$DIR/database-url" ]; then
    local url base db
    url=$(cat "$DIR/database-url"); base=${url%%\?*}; db=${base##*/}
    if [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      psql "${base%/*}/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
      echo "[medusa-down] PostgreSQL database $db dropped"
    fi
    rm -f "$DIR/database-url"
  fi
}
[ -f "$DIR/medusa.pid" ] || { echo "[medusa-down] not running ($DIR)"; wipe; exit 0; }
PID=$(cat "$DIR/medusa.pid")
if kill -0 "$PID" 2>/dev/null; then
  kill "$PID"   # SIGTERM: Medusa shuts its HTTP server and modules down gracefully
  for _ in $(seq 1 80); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
fi
rm -f "$DIR/medusa.pid" "$DIR/running" "$DIR/webhook-url"
echo "[medusa-down] stopped pid $PID"
wipe
