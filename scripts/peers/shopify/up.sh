#!/usr/bin/env bash
# scripts/peers/shopify/up.sh DIR PORT
#
# Starts Ferry's Shopify emulator (server.mjs: the Admin GraphQL API 2026-10 on Shopify's official schema,
# executed by graphql-js against an in-memory shop) on 127.0.0.1:PORT:
#   - schema.sh DIR  → DIR/admin_2026-10.json (npm pack @shopify/dev-mcp@1.16.0, cached in DIR);
#   - install.sh DIR → graphql-js, pinned, in DIR/node_modules;
#   - runs the machine's node on scripts/peers/shopify/server.mjs (log DIR/emulator.log, pid DIR/emulator.pid,
#     bulk results and staged uploads under DIR/data).
# The shop lives in memory: a restart (down.sh, up.sh) starts from the seed (shop ferry-test.myshopify.com
# in AUD, locations "Main warehouse" and "Sydney store", publication "Online Store"); tests also reset it
# with POST /_emulator/reset. Ids and order numbers carry on across resets and restarts (DIR/data/counters.json),
# so data other peers keep from earlier runs never meets an id or order name twice. A warm start takes ~3 s.
#
# Safe to call concurrently: holds an exclusive flock on DIR/.lock, returns at once when the emulator
# already answers on PORT (warning when it runs older sources than these).
#
# Env (read at start; see server.mjs): SHOPIFY_ACCESS_TOKEN (default ferry-test-token), SHOPIFY_WEBHOOK_URL,
#   SHOPIFY_WEBHOOK_SECRET (default ferry-test-shopify-secret), SHOPIFY_WEBHOOK_RETRY_SECONDS (default 20),
#   SHOPIFY_BUCKET_MAX (default 2000), SHOPIFY_RESTORE_RATE (default 100), SHOPIFY_BULK_DELAY_MS (default 200),
#   SHOPIFY_ORDER_NUMBER_START (first order number of a fresh DIR, default 1001),
#   SHOPIFY_UP_TIMEOUT seconds to wait for startup (default 60).
# Stop with scripts/peers/shopify/down.sh DIR.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m "$1"); PORT=$2
TIMEOUT=${SHOPIFY_UP_TIMEOUT:-60}
BASE="http://127.0.0.1:$PORT"
log() { echo "[shopify-up] $*" >&2; }
source_hash() { (cd "$HERE" && find . -name '*.mjs' -not -path './test/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64; }

mkdir -p "$DIR"; cd "$DIR"
exec 9>"$DIR/.lock"
flock 9

if [ -f emulator.pid ] && kill -0 "$(cat emulator.pid)" 2>/dev/null; then
  PID=$(cat emulator.pid)
  for _ in $(seq 1 $((TIMEOUT * 4))); do
    if curl -sf "$BASE/_emulator/health" >/dev/null 2>&1; then
      log "already running (pid $PID) at $BASE"
      [ "$(cat source.sha256 2>/dev/null)" = "$(source_hash)" ] || log "warning: it runs older sources than $HERE: down.sh $DIR, then up.sh again"
      exit 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$PID" 2>/dev/null; then log "pid $PID runs but does not answer on $BASE: stop it with down.sh $DIR"; exit 1; fi
fi
rm -f emulator.pid
if curl -s -o /dev/null "$BASE/"; then log "port $PORT is already in use by something else"; exit 1; fi

SCHEMA=$("$HERE/schema.sh" "$DIR")
"$HERE/install.sh" "$DIR" >/dev/null
source_hash > source.sha256
mkdir -p data
PORT="$PORT" SHOPIFY_SCHEMA="$SCHEMA" SHOPIFY_NODE_MODULES="$DIR/node_modules" SHOPIFY_DATA_DIR="$DIR/data" \
  setsid nohup node "$HERE/server.mjs" >>emulator.log 2>&1 </dev/null 9>&- &
PID=$!
echo "$PID" > emulator.pid
for _ in $(seq 1 $((TIMEOUT * 4))); do
  if ! kill -0 "$PID" 2>/dev/null; then log "emulator exited; last log lines:"; tail -30 emulator.log >&2; rm -f emulator.pid; exit 1; fi
  curl -sf "$BASE/_emulator/health" >/dev/null 2>&1 && break
  sleep 0.25
done
curl -sf "$BASE/_emulator/health" >/dev/null || { log "not answering after ${TIMEOUT}s"; tail -30 emulator.log >&2; exit 1; }
log "READY: pid $PID, $BASE/admin/api/2026-10/graphql.json (X-Shopify-Access-Token: ${SHOPIFY_ACCESS_TOKEN:-ferry-test-token}), test controls $BASE/_emulator/"
