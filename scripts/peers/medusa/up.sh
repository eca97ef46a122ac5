#!/usr/bin/env bash
# scripts/peers/medusa/up.sh DIR PORT
#
# Installs (npm ci from this folder's package-lock.json: Medusa 2.21.2 and every transitive package
# pinned), configures and starts a real Medusa 2 server on 127.0.0.1:PORT, with its database on the
# local PostgreSQL, then seeds it (idempotently) the way an Australian business sells:
#   - store currency AUD; region "Australia" (AUD, country au, payment provider pp_system_default —
#     Medusa's built-in provider that authorises at once); tax region au (tp_system) with GST 10 %;
#     prices exclude tax (Medusa's default), so a 25.00 item is 25.00 + 2.50 GST;
#   - sales channel "Ferry Webshop"; stock location "Sydney warehouse" linked to it, with the manual
#     fulfilment provider and a shipping fulfilment set whose service zone "Australia" covers au;
#   - shipping option "Standard shipping" (flat 9.95 AUD + GST, manual_manual, default shipping profile);
#   - publishable API key "Ferry webshop" linked to the sales channel (Store API header
#     x-publishable-api-key), written to DIR/publishable-api-key;
#   - admin user admin@ferry.test / ferry-admin and a secret API key (Admin API, HTTP Basic with the
#     key as user name and an empty password), written to DIR/admin-api-key;
#   - every id above in DIR/seed.json.
# Medusa runs with its in-memory event bus, cache, workflow engine and locking (no Redis here; REDIS_URL
# and CACHE_REDIS_URL are cleared) and without its admin dashboard. Ferry's webhook subscriber
# (ferry-webhooks.js, installed as src/subscribers/ferry-webhooks.js) POSTs signed events to WEBHOOK_URL.
#
# Warm restart is fast: install, migrations, admin user and seed each leave a stamp in DIR (install.stamp,
# migrated, seeded) naming the pinned versions and the database, and are skipped when it matches.
# Safe to call concurrently (tests run as parallel processes): the whole script holds an exclusive
# flock on DIR/.lock, and returns at once when the server is already answering.
#
# Env:
#   DATABASE_URL      postgres://USER@HOST:PORT/DBNAME (default: the one DIR used before, kept in
#                     DIR/database-url, else postgres://postgres@127.0.0.1:5432/ferry_medusa_PORT);
#                     DBNAME is created when missing (psql, via the server's `postgres` database)
#   WEBHOOK_URL       where the subscriber POSTs events (optional; fixed at server start)
#   WEBHOOK_SECRET    HMAC-SHA256 key for X-Ferry-Signature (default ferry-test-webhook-secret)
#   WEBHOOK_RETRY_SECONDS  how long a failed delivery is retried (default 20)
#   MEDUSA_UP_TIMEOUT seconds to wait for startup (default 180)
# Stop with scripts/peers/medusa/down.sh DIR [--wipe].
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m "$1"); PORT=$2
# Pinned: the connector is tested against exactly these (package-lock.json pins the rest).
MEDUSA_VERSION=2.21.2
ADMIN_EMAIL=admin@ferry.test
ADMIN_PASSWORD=ferry-admin
TIMEOUT=${MEDUSA_UP_TIMEOUT:-180}
BASE="http://127.0.0.1:$PORT"
t_start=$(date +%s%3N)
secs() { local ms=$(( $(date +%s%3N) - $1 )); printf '%d.%01ds' $((ms/1000)) $(((ms%1000)/100)); }
elapsed() { secs "$t_start"; }
log() { echo "[medusa-up] $*" >&2; }

mkdir -p "$DIR"; cd "$DIR"
exec 9>"$DIR/.lock"
flock 9   # held until this script exits (fd 9 closes)

# ---- database -----------------------------------------------------------------------------------------
DATABASE_URL=${DATABASE_URL:-$(cat database-url 2>/dev/null || echo "postgres://postgres@127.0.0.1:5432/ferry_medusa_$PORT")}
case "$DATABASE_URL" in postgres://*|postgresql://*) ;; *)
  log "DATABASE_URL must be postgres://USER@HOST:PORT/DBNAME (got $DATABASE_URL)"; exit 2;; esac
PG_BASE=${DATABASE_URL%%\?*}     # without ?query
PG_DB=${PG_BASE##*/}
[[ "$PG_DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { log "DATABASE_URL: database name '$PG_DB' is not a plain identifier"; exit 2; }
PG_ADMIN_URL="${PG_BASE%/*}/postgres"
# What each stamp must say for its step to count as done.
INSTALL_STAMP="medusa $MEDUSA_VERSION lock $(sha256sum "$HERE/package-lock.json" | cut -c1-16) node $(node --version)"
DB_STAMP="medusa $MEDUSA_VERSION $PG_BASE"
db_exists() {
  [ "$(psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = 1 ]
}
is_seeded() { [ "$(cat seeded 2>/dev/null)" = "$DB_STAMP" ] && [ -s admin-api-key ] && [ -s publishable-api-key ]; }

# ---- already running? ---------------------------------------------------------------------------------
if [ -f medusa.pid ]; then
  OLD=$(cat medusa.pid)
  if kill -0 "$OLD" 2>/dev/null; then
    if [ "$(cat running 2>/dev/null)" != "$DB_STAMP" ]; then
      log "the server in $DIR (pid $OLD) runs '$(cat running 2>/dev/null)', not '$DB_STAMP': stop it first (down.sh $DIR)"
      exit 1
    fi
    for _ in $(seq 1 $((TIMEOUT * 4))); do   # it may still be starting (a previous up.sh was killed)
      if curl -sf "$BASE/health" >/dev/null 2>&1; then
        if is_seeded; then
          log "already running (pid $OLD) at $BASE"
          if [ "$(cat webhook-url 2>/dev/null)" != "${WEBHOOK_URL:-}" ]; then
            log "warning: it sends webhooks to '$(cat webhook-url 2>/dev/null)', not '${WEBHOOK_URL:-}' (fixed at start: down.sh $DIR, then up.sh again)"
          fi
          exit 0
        fi
        break   # up but not seeded: seed below
      fi
      kill -0 "$OLD" 2>/dev/null || break
      sleep 0.25
    done
  fi
  if ! kill -0 "$OLD" 2>/dev/null; then rm -f medusa.pid; fi
fi

# The Medusa CLI, with the environment the server and its commands share. No Redis: Medusa then uses
# its in-memory modules. NODE_ENV stays development (production would want HTTPS session cookies).
# The CLI's entry point proper: its `medusa` bin only adds ts-node (absent: the project is plain JS, and
# it would log a stack trace on every command) and dotenv (no .env here) in front of it.
MEDUSA_CLI="$DIR/node_modules/@medusajs/cli/dist/index.js"
MEDUSA=(env -u REDIS_URL -u CACHE_REDIS_URL -u NODE_ENV MEDUSA_DISABLE_TELEMETRY=true DATABASE_URL="$DATABASE_URL"
  WEBHOOK_URL="${WEBHOOK_URL:-}" WEBHOOK_SECRET="${WEBHOOK_SECRET:-ferry-test-webhook-secret}"
  WEBHOOK_RETRY_SECONDS="${WEBHOOK_RETRY_SECONDS:-20}" node "$MEDUSA_CLI")

if [ ! -f medusa.pid ]; then
  if curl -s -o /dev/null "$BASE/health"; then
    log "port $PORT is already in use by something else"; exit 1
  fi

  # ---- install ------------------------------------------------------------------------------------
  if [ "$(cat install.stamp 2>/dev/null)" != "$INSTALL_STAMP" ] || [ ! -f "$MEDUSA_CLI" ]; then
    t=$(date +%s%3N)
    cp "$HERE/package.json" "$HERE/package-lock.json" .
    log "npm ci @medusajs/medusa@$MEDUSA_VERSION (+ framework, cli; lock file pins the rest) ..."
    npm ci --prefer-offline --no-audit --no-fund --loglevel=error >npm-install.log 2>&1 \
      || { tail -30 npm-install.log >&2; exit 1; }
    printf '%s\n' "$INSTALL_STAMP" > install.stamp
    log "installed in $(secs "$t") ($(du -sh node_modules | cut -f1))"
  fi
  # The project's own files: cheap, so always refreshed from the repo.
  mkdir -p src/subscribers
  cp "$HERE/medusa-config.js" medusa-config.js
  cp "$HERE/ferry-webhooks.js" src/subscribers/ferry-webhooks.js

  # ---- database, migrations, admin user -----------------------------------------------------------
  if ! db_exists; then
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
    rm -f migrated seeded
    log "created PostgreSQL database $PG_DB"
  fi
  (umask 077; printf '%s\n' "$DATABASE_URL" > database-url)   # for the next up.sh and down.sh --wipe
  # The database carries its own stamp too (a comment), so a fresh DIR on an already migrated database
  # (a new checkout on the same machine) skips the migrations.
  MIGRATED_COMMENT="ferry medusa peer: migrated by Medusa $MEDUSA_VERSION"
  if [ "$(cat migrated 2>/dev/null)" != "$DB_STAMP" ] \
     && [ "$(psql "$PG_BASE" -v ON_ERROR_STOP=1 -tAc "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()")" != "$MIGRATED_COMMENT" ]; then
    t=$(date +%s%3N)
    "${MEDUSA[@]}" db:migrate >migrate.log 2>&1 || { log "medusa db:migrate failed:"; tail -30 migrate.log >&2; exit 1; }
    psql "$PG_BASE" -v ON_ERROR_STOP=1 -qc "COMMENT ON DATABASE \"$PG_DB\" IS '$MIGRATED_COMMENT'" >/dev/null
    log "migrated $PG_DB in $(secs "$t")"
  fi
  printf '%s\n' "$DB_STAMP" > migrated
  HAS_ADMIN=$(psql "$PG_BASE" -v ON_ERROR_STOP=1 -tAc "SELECT 1 FROM \"user\" WHERE email = '$ADMIN_EMAIL' AND deleted_at IS NULL")
  if [ "$HAS_ADMIN" != 1 ]; then
    t=$(date +%s%3N)
    "${MEDUSA[@]}" user -e "$ADMIN_EMAIL" -p "$ADMIN_PASSWORD" >user.log 2>&1 || { log "medusa user failed:"; tail -30 user.log >&2; exit 1; }
    log "created admin user $ADMIN_EMAIL in $(secs "$t")"
  fi

  # ---- start --------------------------------------------------------------------------------------
  printf '%s\n' "$DB_STAMP" > running
  printf '%s\n' "${WEBHOOK_URL:-}" > webhook-url
  setsid nohup "${MEDUSA[@]}" start -H 127.0.0.1 -p "$PORT" >>medusa.log 2>&1 </dev/null 9>&- &
  PID=$!
  echo "$PID" > medusa.pid
  log "started pid $PID, waiting for $BASE/health ..."
fi
PID=$(cat medusa.pid)
t=$(date +%s%3N)
for _ in $(seq 1 $((TIMEOUT * 4))); do
  if ! kill -0 "$PID" 2>/dev/null; then
    log "server exited; last log lines:"; tail -30 medusa.log >&2; rm -f medusa.pid; exit 1
  fi
  curl -sf "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.25
done
curl -sf "$BASE/health" >/dev/null || { log "not answering after ${TIMEOUT}s"; tail -30 medusa.log >&2; exit 1; }
log "answering after $(secs "$t") (total $(elapsed))"

# ---- seed (idempotent: everything is looked up by name before it is created) --------------------------
if ! is_seeded; then
  t=$(date +%s%3N)
  TOKEN=$(curl -sS -X POST "$BASE/auth/user/emailpass" -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | jq -r '.token // empty')
  [ -n "$TOKEN" ] || { log "admin login as $ADMIN_EMAIL returned no token"; exit 1; }
  api() { # api METHOD PATH [JSON] -> response JSON; exits naming the call on an HTTP error
    local out code
    out=$(curl -sS -X "$1" "$BASE$2" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
      ${3:+--data-binary "$3"} -w '\n%{http_code}') || { log "$1 $2: no answer"; exit 1; }
    code=${out##*$'\n'}; out=${out%$'\n'*}
    [[ "$code" == 2* ]] || { log "$1 $2 -> HTTP $code: $out"; exit 1; }
    printf '%s\n' "$out"
  }
  q() { jq -rn --arg v "$1" '$v|@uri'; }   # URL-encodes a query value

  STORE=$(api GET /admin/stores | jq -r '.stores[0].id')
  api POST "/admin/stores/$STORE" '{"name":"Ferry Test Shop","supported_currencies":[{"currency_code":"aud","is_default":true}]}' >/dev/null

  SC=$(api GET "/admin/sales-channels?name=$(q 'Ferry Webshop')" | jq -r '.sales_channels[0].id // empty')
  [ -n "$SC" ] || SC=$(api POST /admin/sales-channels '{"name":"Ferry Webshop","description":"Where Ferry test orders are placed"}' | jq -r .sales_channel.id)
  api POST "/admin/stores/$STORE" "{\"default_sales_channel_id\":\"$SC\"}" >/dev/null

  REGION=$(api GET "/admin/regions?q=Australia" | jq -r '.regions[] | select(.name=="Australia") | .id' | head -1)
  [ -n "$REGION" ] || REGION=$(api POST /admin/regions \
    '{"name":"Australia","currency_code":"aud","countries":["au"],"payment_providers":["pp_system_default"],"automatic_taxes":true}' | jq -r .region.id)
  api POST "/admin/stores/$STORE" "{\"default_region_id\":\"$REGION\"}" >/dev/null

  TAXREG=$(api GET "/admin/tax-regions?country_code=au" | jq -r '.tax_regions[] | select(.parent_id == null and .province_code == null) | .id' | head -1)
  [ -n "$TAXREG" ] || TAXREG=$(api POST /admin/tax-regions \
    '{"country_code":"au","provider_id":"tp_system","default_tax_rate":{"name":"GST","code":"GST","rate":10}}' | jq -r .tax_region.id)

  LOC=$(api GET "/admin/stock-locations?name=$(q 'Sydney warehouse')" | jq -r '.stock_locations[0].id // empty')
  [ -n "$LOC" ] || LOC=$(api POST /admin/stock-locations \
    '{"name":"Sydney warehouse","address":{"address_1":"1 George St","city":"Sydney","province":"NSW","postal_code":"2000","country_code":"au"}}' | jq -r .stock_location.id)
  api POST "/admin/stores/$STORE" "{\"default_location_id\":\"$LOC\"}" >/dev/null
  # Links: adding an existing link again is a no-op in Medusa.
  api POST "/admin/stock-locations/$LOC/sales-channels" "{\"add\":[\"$SC\"]}" >/dev/null
  api POST "/admin/stock-locations/$LOC/fulfillment-providers" '{"add":["manual_manual"]}' >/dev/null
  FSET=$(api GET "/admin/stock-locations/$LOC?fields=*fulfillment_sets" | jq -r '.stock_location.fulfillment_sets[] | select(.type=="shipping") | .id' | head -1)
  [ -n "$FSET" ] || FSET=$(api POST "/admin/stock-locations/$LOC/fulfillment-sets?fields=*fulfillment_sets" \
    '{"name":"Sydney warehouse shipping","type":"shipping"}' | jq -r '.stock_location.fulfillment_sets[] | select(.type=="shipping") | .id' | head -1)
  ZONE=$(api GET "/admin/stock-locations/$LOC?fields=*fulfillment_sets,*fulfillment_sets.service_zones" \
    | jq -r ".stock_location.fulfillment_sets[] | select(.id==\"$FSET\") | .service_zones[] | select(.name==\"Australia\") | .id" | head -1)
  [ -n "$ZONE" ] || ZONE=$(api POST "/admin/fulfillment-sets/$FSET/service-zones" \
    '{"name":"Australia","geo_zones":[{"type":"country","country_code":"au"}]}' | jq -r '.fulfillment_set.service_zones[] | select(.name=="Australia") | .id' | head -1)

  PROFILE=$(api GET "/admin/shipping-profiles?type=default" | jq -r '.shipping_profiles[0].id')
  SHIP=$(api GET "/admin/shipping-options?service_zone_id=$ZONE" | jq -r '.shipping_options[] | select(.name=="Standard shipping") | .id' | head -1)
  [ -n "$SHIP" ] || SHIP=$(api POST /admin/shipping-options "{\"name\":\"Standard shipping\",\"price_type\":\"flat\",
      \"service_zone_id\":\"$ZONE\",\"shipping_profile_id\":\"$PROFILE\",\"provider_id\":\"manual_manual\",
      \"type\":{\"label\":\"Standard\",\"description\":\"Australia Post parcel\",\"code\":\"standard\"},
      \"prices\":[{\"currency_code\":\"aud\",\"amount\":9.95}],
      \"rules\":[{\"attribute\":\"enabled_in_store\",\"value\":\"true\",\"operator\":\"eq\"},{\"attribute\":\"is_return\",\"value\":\"false\",\"operator\":\"eq\"}]}" \
    | jq -r .shipping_option.id)

  PK=$(api GET "/admin/api-keys?type=publishable&limit=100" | jq -c '[.api_keys[] | select(.title=="Ferry webshop" and .revoked_at==null)][0] // empty')
  [ -n "$PK" ] || PK=$(api POST /admin/api-keys '{"title":"Ferry webshop","type":"publishable"}' | jq -c .api_key)
  PK_ID=$(jq -r .id <<<"$PK")
  api POST "/admin/api-keys/$PK_ID/sales-channels" "{\"add\":[\"$SC\"]}" >/dev/null
  (umask 077; jq -r .token <<<"$PK" > publishable-api-key)

  # A secret key's token is shown only when it is created: keep the one in DIR/admin-api-key while it
  # still authenticates, else create a new one.
  SK_TOKEN=$(cat admin-api-key 2>/dev/null || true)
  if [ -z "$SK_TOKEN" ] || ! curl -sf -o /dev/null -u "$SK_TOKEN:" "$BASE/admin/stores"; then
    SK=$(api POST /admin/api-keys "{\"title\":\"Ferry $(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"type\":\"secret\"}")
    SK_TOKEN=$(jq -r .api_key.token <<<"$SK")
    (umask 077; printf '%s\n' "$SK_TOKEN" > admin-api-key)
  fi
  curl -sf -o /dev/null -u "$SK_TOKEN:" "$BASE/admin/stores" || { log "the secret API key in $DIR/admin-api-key does not authenticate"; exit 1; }

  jq -n --arg base "$BASE" --arg store "$STORE" --arg sc "$SC" --arg region "$REGION" --arg tax_region "$TAXREG" \
    --arg location "$LOC" --arg fset "$FSET" --arg zone "$ZONE" --arg profile "$PROFILE" --arg ship "$SHIP" \
    --arg pk_id "$PK_ID" --arg pk "$(cat publishable-api-key)" --arg email "$ADMIN_EMAIL" --arg password "$ADMIN_PASSWORD" \
    '{base_url:$base, admin_email:$email, admin_password:$password, store_id:$store, sales_channel_id:$sc,
      region_id:$region, tax_region_id:$tax_region, stock_location_id:$location, fulfillment_set_id:$fset,
      service_zone_id:$zone, shipping_profile_id:$profile, shipping_option_id:$ship,
      publishable_api_key_id:$pk_id, publishable_api_key:$pk}' > seed.json
  printf '%s\n' "$DB_STAMP" > seeded
  log "seeded in $(secs "$t") (ids in $DIR/seed.json)"
fi
log "READY in $(elapsed): pid $PID, $BASE (Admin API /admin: secret key in $DIR/admin-api-key or $ADMIN_EMAIL/$ADMIN_PASSWORD; Store API /store: publishable key in $DIR/publishable-api-key), database $PG_DB"
