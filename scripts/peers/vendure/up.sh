#!/usr/bin/env bash
# scripts/peers/vendure/up.sh DIR PORT
#
# Installs (npm, reusing the npm cache; versions pinned), configures and starts a real Vendure 3.x
# server on 127.0.0.1:PORT with an sql.js (pure JS/WASM SQLite) database in DIR — or, when DATABASE_URL
# is set, on PostgreSQL — then seeds it (idempotently) the way an Australian business sells:
#   - country AU (+ NZ), zone "Australia", channel currency AUD, default tax + shipping zone Australia;
#   - tax category "GST" (default) with a 10 % rate in zone Australia;
#   - channel pricesIncludeTax = $VENDURE_PRICES_INCLUDE_TAX (default false: the ERP's net prices go in
#     exactly; the shop still shows priceWithTax = net + 10 % GST);
#   - shipping method `standard` (9.95 AUD + GST, manual fulfilment), payment method `test-pay`
#     (Vendure's dummy handler, settles at once).
# The server (scripts/peers/vendure/server.js) runs Ferry's Vendure plugin (signed webhooks, the fixed-price
# promotion action, the fulfilment handler, custom fields) as a shop installs it: this script packs
# integrations/vendure-plugin with `npm pack` (its prepack compiles the TypeScript) into DIR/plugin and
# `npm install`s the tarball; again only when the package's sources changed (DIR/plugin/source.sha256).
#
# Safe to call concurrently (tests run as parallel processes): the whole script holds an exclusive
# flock on DIR/.lock, and returns at once when the server is already answering.
#
# Env:
#   WEBHOOK_URL       where the server POSTs events (optional; fixed at server start)
#   WEBHOOK_SECRET    HMAC-SHA256 key for X-Ferry-Signature (default ferry-test-webhook-secret)
#   WEBHOOK_RETRY_SECONDS  how long a failed delivery is retried (default 20; the plugin's own default is 24 h)
#   VENDURE_PRICES_INCLUDE_TAX  true|false, only applied when seeding a fresh database (default false)
#   VENDURE_UP_TIMEOUT seconds to wait for startup (default 180)
#   DATABASE_URL      optional, postgres://USER[:PASSWORD]@HOST:PORT/DBNAME: run on PostgreSQL instead
#                     of sql.js (e.g. postgres://postgres@127.0.0.1:5432/ferry_vendure_bench). Installs the
#                     pinned npm `pg` driver beside Vendure, creates DBNAME when it does not exist (psql,
#                     connecting to the server's `postgres` database with the same credentials) and lets
#                     Vendure synchronize the schema, as with sql.js. Without it: sql.js in
#                     DIR/vendure.sqlite (the default; what the tests use). A DIR runs one backend at a
#                     time (named in DIR/backend; the URL is kept in DIR/database-url for down.sh --wipe);
#                     asking a running peer for another backend fails: stop it with down.sh first.
#                     sql.js rewrites its whole file on every transaction, so large data sets
#                     (benchmarks) want PostgreSQL.
# Superadmin: superadmin / superadmin. Stop with scripts/peers/vendure/down.sh DIR.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m "$1"); PORT=$2
# Pinned: the connector is tested against exactly these.
VENDURE_VERSION=3.7.3
SQLJS_VERSION=1.16.0
TYPESCRIPT_VERSION=5.9.3 # compiles the plugin when it is packed (its prepack); its types come from @vendure/core here
PLUGIN_SRC=$(cd "$HERE/../../../integrations/vendure-plugin" && pwd)
PG_VERSION=8.23.1        # npm `pg`, installed only for DATABASE_URL
DATABASE_URL=${DATABASE_URL:-}
TIMEOUT=${VENDURE_UP_TIMEOUT:-180}
BASE="http://127.0.0.1:$PORT"
t_start=$(date +%s%3N)
elapsed() { local ms=$(( $(date +%s%3N) - t_start )); printf '%d.%01ds' $((ms/1000)) $(((ms%1000)/100)); }
log() { echo "[vendure-up] $*" >&2; }

# ---- backend ---------------------------------------------------------------------------------------
# BACKEND names the database this DIR's server uses; it is written to DIR/backend at start and to
# DIR/seeded once seeded (an older, empty `seeded` file means sql.js).
if [ -n "$DATABASE_URL" ]; then
  case "$DATABASE_URL" in postgres://*|postgresql://*) ;; *)
    log "DATABASE_URL must be postgres://USER@HOST:PORT/DBNAME (got $DATABASE_URL)"; exit 2;; esac
  PG_BASE=${DATABASE_URL%%\?*}     # without ?query
  PG_DB=${PG_BASE##*/}
  [[ "$PG_DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { log "DATABASE_URL: database name '$PG_DB' is not a plain identifier"; exit 2; }
  PG_ADMIN_URL="${PG_BASE%/*}/postgres"
  BACKEND="postgres $PG_BASE"
else
  BACKEND="sqljs"
fi
# What the installed plugin was built from (DIR/plugin/source.sha256): its package sources, hashed.
plugin_hash() {
  (cd "$PLUGIN_SRC" && find package.json tsconfig.json README.md src -type f -print0 | sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -c1-64
}
is_seeded() {
  [ -f seeded ] || return 1
  local s; s=$(cat seeded)
  [ "$s" = "$BACKEND" ] || { [ -z "$s" ] && [ "$BACKEND" = sqljs ]; }
}

mkdir -p "$DIR"; cd "$DIR"
exec 9>"$DIR/.lock"
flock 9   # held until this script exits (fd 9 closes)

# ---- already running? -----------------------------------------------------------------------------
if [ -f vendure.pid ]; then
  OLD=$(cat vendure.pid)
  if kill -0 "$OLD" 2>/dev/null; then
    RUNNING=$(cat backend 2>/dev/null || echo sqljs)
    if [ "$RUNNING" != "$BACKEND" ]; then
      log "the server in $DIR (pid $OLD) runs on '$RUNNING', not '$BACKEND': stop it first (down.sh $DIR)"
      exit 1
    fi
    for _ in $(seq 1 $((TIMEOUT * 4))); do   # it may still be starting (a previous up.sh was killed)
      if is_seeded && curl -sf "$BASE/health" >/dev/null 2>&1; then
        log "already running (pid $OLD) at $BASE"
        if [ "$(cat plugin/source.sha256 2>/dev/null)" != "$(plugin_hash)" ]; then
          log "warning: its Ferry plugin was not built from the current $PLUGIN_SRC: down.sh $DIR, then up.sh again"
        fi
        exit 0
      fi
      curl -sf "$BASE/health" >/dev/null 2>&1 && break   # up but not seeded: seed below
      kill -0 "$OLD" 2>/dev/null || break
      sleep 0.25
    done
  fi
  if ! kill -0 "$OLD" 2>/dev/null; then rm -f vendure.pid; fi
fi

if [ ! -f vendure.pid ]; then
  if curl -s -o /dev/null "$BASE/health"; then
    log "port $PORT is already in use by something else"; exit 1
  fi

  # ---- install ------------------------------------------------------------------------------------
  if [ ! -f node_modules/@vendure/core/package.json ] \
     || ! grep -q "\"version\": \"$VENDURE_VERSION\"" node_modules/@vendure/core/package.json \
     || ! grep -qs "\"version\": \"$TYPESCRIPT_VERSION\"" node_modules/typescript/package.json \
     || { [ -n "$DATABASE_URL" ] && ! grep -qs "\"version\": \"$PG_VERSION\"" node_modules/pg/package.json; }; then
    # pg stays listed once installed, so a later sql.js-only install in the same DIR keeps it.
    PGDEP=""
    if [ -n "$DATABASE_URL" ] || [ -f node_modules/pg/package.json ]; then PGDEP=", \"pg\": \"$PG_VERSION\""; fi
    cat > package.json <<EOF
{ "name": "ferry-peer-vendure", "version": "1.0.0", "private": true,
  "dependencies": { "@vendure/core": "$VENDURE_VERSION", "sql.js": "$SQLJS_VERSION", "typescript": "$TYPESCRIPT_VERSION"$PGDEP } }
EOF
    rm -f plugin/source.sha256   # this install drops the plugin (not in package.json): install it again below
    log "npm install @vendure/core@$VENDURE_VERSION sql.js@$SQLJS_VERSION typescript@$TYPESCRIPT_VERSION${PGDEP:+ pg@$PG_VERSION} ..."
    npm install --prefer-offline --no-audit --no-fund --loglevel=error >npm-install.log 2>&1 \
      || { tail -30 npm-install.log >&2; exit 1; }
    log "installed in $(elapsed) ($(du -sh node_modules | cut -f1))"
  fi

  # ---- Ferry's plugin, packed from the repo and installed from the tarball ---------------------------
  PLUGIN_HASH=$(plugin_hash)
  if [ "$(cat plugin/source.sha256 2>/dev/null)" != "$PLUGIN_HASH" ] || [ ! -f node_modules/@ferry/vendure-plugin/dist/index.js ]; then
    t_plugin=$(date +%s%3N)
    rm -rf plugin; mkdir -p plugin/build
    cp -r "$PLUGIN_SRC"/package.json "$PLUGIN_SRC"/tsconfig.json "$PLUGIN_SRC"/README.md "$PLUGIN_SRC"/src plugin/build/
    # prepack runs tsc: typescript and @vendure/core's types resolve from DIR/node_modules (a parent folder).
    (cd plugin/build && PATH="$DIR/node_modules/.bin:$PATH" npm pack --pack-destination .. --loglevel=error) >plugin-build.log 2>&1 \
      || { log "npm pack of $PLUGIN_SRC failed:"; tail -30 plugin-build.log >&2; exit 1; }
    TARBALL=$(cd plugin && ls -- *.tgz)
    npm install --prefer-offline --no-audit --no-fund --loglevel=error "./plugin/$TARBALL" >>plugin-build.log 2>&1 \
      || { log "npm install of the plugin tarball failed:"; tail -30 plugin-build.log >&2; exit 1; }
    printf '%s\n' "$PLUGIN_HASH" > plugin/source.sha256
    ms=$(( $(date +%s%3N) - t_plugin ))
    log "packed and installed @ferry/vendure-plugin (plugin/$TARBALL) in $((ms/1000)).$(((ms%1000)/100))s"
  fi
  cp "$HERE/server.js" server.js

  # ---- PostgreSQL database ------------------------------------------------------------------------
  if [ -n "$DATABASE_URL" ]; then
    EXISTS=$(psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") \
      || { log "cannot query PostgreSQL at $PG_ADMIN_URL"; exit 1; }
    if [ "$EXISTS" != 1 ]; then
      psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
      log "created PostgreSQL database $PG_DB"
    fi
    (umask 077; printf '%s\n' "$DATABASE_URL" > database-url)   # for down.sh --wipe
  fi
  printf '%s\n' "$BACKEND" > backend

  # ---- start --------------------------------------------------------------------------------------
  VENDURE_DISABLE_TELEMETRY=true PORT="$PORT" DB_FILE="$DIR/vendure.sqlite" DATABASE_URL="$DATABASE_URL" \
    WEBHOOK_URL="${WEBHOOK_URL:-}" WEBHOOK_SECRET="${WEBHOOK_SECRET:-ferry-test-webhook-secret}" \
    WEBHOOK_RETRY_SECONDS="${WEBHOOK_RETRY_SECONDS:-20}" \
    setsid nohup node server.js >>vendure.log 2>&1 </dev/null 9>&- &
  PID=$!
  echo "$PID" > vendure.pid
  log "started pid $PID, waiting for $BASE/health ..."
fi
PID=$(cat vendure.pid)
for _ in $(seq 1 $((TIMEOUT * 4))); do
  if ! kill -0 "$PID" 2>/dev/null; then
    log "server exited; last log lines:"; tail -30 vendure.log >&2; rm -f vendure.pid; exit 1
  fi
  curl -sf "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.25
done
curl -sf "$BASE/health" >/dev/null || { log "not answering after ${TIMEOUT}s"; tail -30 vendure.log >&2; exit 1; }
log "answering after $(elapsed)"

# ---- seed (idempotent) ----------------------------------------------------------------------------
A="$BASE/admin-api"; TOKEN=""
gql() { # gql QUERY [VARS_JSON] -> JSON on stdout; exits on transport / GraphQL error / ErrorResult
  local hdr body t; hdr=$(mktemp)
  body=$(jq -nc --arg q "$1" --argjson v "${2:-{\}}" '{query:$q,variables:$v}' |
    curl -sS -D "$hdr" -X POST "$A" -H 'content-type: application/json' \
      ${TOKEN:+-H "authorization: Bearer $TOKEN"} --data-binary @-) || { rm -f "$hdr"; exit 1; }
  t=$(awk 'tolower($1)=="vendure-auth-token:"{print $2}' "$hdr" | tr -d '\r'); rm -f "$hdr"
  [ -n "$t" ] && TOKEN=$t
  if ! jq -e '.data and (.errors|not) and ([.. | objects | select(has("errorCode"))] | length == 0)' <<<"$body" >/dev/null; then
    log "GraphQL error: $body"; exit 1
  fi
  printf '%s\n' "$body"
}
if ! is_seeded; then
  # (not in $(...): gql must set TOKEN in this shell)
  gql 'mutation { login(username:"superadmin", password:"superadmin") { ... on CurrentUser { id } ... on ErrorResult { errorCode message } } }' >login.json
  [ -n "$TOKEN" ] || { log "admin login returned no token: $(cat login.json)"; exit 1; }
  rm -f login.json
  N_SHIP=$(gql '{ shippingMethods { totalItems } }' | jq '.data.shippingMethods.totalItems')
  if [ "$N_SHIP" = 0 ]; then
    PIT=${VENDURE_PRICES_INCLUDE_TAX:-false}
    log "seeding AU/NZ, zone Australia, channel AUD (pricesIncludeTax=$PIT), GST 10 %, shipping, payment ..."
    AU=$(gql 'mutation($i:CreateCountryInput!){ createCountry(input:$i){ id } }' \
      '{"i":{"code":"AU","enabled":true,"translations":[{"languageCode":"en","name":"Australia"}]}}' | jq -r '.data.createCountry.id')
    gql 'mutation($i:CreateCountryInput!){ createCountry(input:$i){ id } }' \
      '{"i":{"code":"NZ","enabled":true,"translations":[{"languageCode":"en","name":"New Zealand"}]}}' >/dev/null
    ZID=$(gql 'mutation($i:CreateZoneInput!){ createZone(input:$i){ id } }' \
      "{\"i\":{\"name\":\"Australia\",\"memberIds\":[\"$AU\"]}}" | jq -r '.data.createZone.id')
    CHID=$(gql '{ activeChannel { id } }' | jq -r '.data.activeChannel.id')
    gql 'mutation($i:UpdateChannelInput!){ updateChannel(input:$i){ ... on Channel { id } ... on ErrorResult { errorCode message } } }' \
      "{\"i\":{\"id\":\"$CHID\",\"defaultTaxZoneId\":\"$ZID\",\"defaultShippingZoneId\":\"$ZID\",\"defaultCurrencyCode\":\"AUD\",\"availableCurrencyCodes\":[\"AUD\"],\"pricesIncludeTax\":$PIT}}" >/dev/null
    TCID=$(gql 'mutation($i:CreateTaxCategoryInput!){ createTaxCategory(input:$i){ id } }' \
      '{"i":{"name":"GST","isDefault":true}}' | jq -r '.data.createTaxCategory.id')
    gql 'mutation($i:CreateTaxRateInput!){ createTaxRate(input:$i){ id } }' \
      "{\"i\":{\"name\":\"GST 10%\",\"enabled\":true,\"value\":10,\"categoryId\":\"$TCID\",\"zoneId\":\"$ZID\"}}" >/dev/null
    gql 'mutation($i:CreateShippingMethodInput!){ createShippingMethod(input:$i){ id } }' \
      '{"i":{"code":"standard","fulfillmentHandler":"manual-fulfillment",
        "checker":{"code":"default-shipping-eligibility-checker","arguments":[{"name":"orderMinimum","value":"0"}]},
        "calculator":{"code":"default-shipping-calculator","arguments":[{"name":"rate","value":"995"},{"name":"includesTax","value":"exclude"},{"name":"taxRate","value":"10"}]},
        "translations":[{"languageCode":"en","name":"Standard shipping","description":"Australia Post parcel"}]}}' >/dev/null
    gql 'mutation($i:CreatePaymentMethodInput!){ createPaymentMethod(input:$i){ id } }' \
      '{"i":{"code":"test-pay","enabled":true,"handler":{"code":"dummy-payment-handler","arguments":[{"name":"automaticSettle","value":"true"}]},
        "translations":[{"languageCode":"en","name":"Test payment"}]}}' >/dev/null
  fi
  printf '%s\n' "$BACKEND" > seeded
fi
log "READY in $(elapsed): pid $PID, Admin API $A, Shop API $BASE/shop-api, superadmin/superadmin, database ${BACKEND%% *}${PG_DB:+ $PG_DB}"
