#!/usr/bin/env bash
# up.sh DIR PORT — bring up a local Tryton 8.2 for Ferry's integration tests and benchmarks.
#
#   1. venv DIR/venv with pinned trytond 8.2.* and the modules the connector uses (from PyPI);
#   2. a SQLite database DIR/db/$TRYTON_DB.sqlite with the master data of setup_master.py (company in
#      AUD, chart of accounts, fiscal year, GST 10 %, payment terms, FREIGHT/DISCOUNT products, B2C
#      party, customer categories, a price list, a carrier, a web.shop on warehouse WH);
#   3. trytond on 127.0.0.1:PORT in the background (pid in DIR/trytond.pid); returns once a login works.
#
# Safe to call concurrently (every test process calls it): the whole script runs under an exclusive
# flock on DIR/.lock, and a call that finds the server up returns at once. A second cold run reuses the
# venv and copies DIR/pristine.sqlite (kept after the first initialisation) instead of the ~40 s module
# initialisation. The database is NOT reset between runs: tests create uniquely named data. Set
# TRYTON_RESET=1 to start from the pristine copy again (the server is restarted).
#
# Env: TRYTON_DB (default tryton), TRYTON_ADMIN_PASSWORD (default admin-pass-123, >= 8 chars),
#      PYTHON (default python3, >= 3.10), TRYTON_RESET=1.
# Stop with down.sh DIR.
set -euo pipefail

DIR=${1:?usage: up.sh DIR PORT}
PORT=${2:?usage: up.sh DIR PORT}
DB=${TRYTON_DB:-tryton}
PASSWORD=${TRYTON_ADMIN_PASSWORD:-admin-pass-123}
PYTHON=${PYTHON:-python3}
SERIES='8.2.*'
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
exec 9>"$DIR/.lock"
flock 9      # held until this script exits (fd 9 closes)

VENV=$DIR/venv
CONF=$DIR/trytond.conf
DBDIR=$DIR/db
DBFILE=$DBDIR/$DB.sqlite
PIDFILE=$DIR/trytond.pid
LOG=$DIR/trytond.log
t0=$(date +%s%N)
stamp() {
    local d=$(( ($(date +%s%N) - t0) / 100000000 ))
    printf '[tryton-up %4d.%ds] %s\n' $((d / 10)) $((d % 10)) "$*" >&2
}

rpc_up() {
    curl -sf -m 2 -X POST -H 'Content-Type: application/json' \
        -d '{"id":0,"method":"common.server.version","params":[]}' \
        "http://127.0.0.1:$PORT/rpc/" >/dev/null 2>&1
}
login_ok() {
    local out
    out=$(curl -s -m 5 -X POST -H 'Content-Type: application/json' \
        -d "{\"id\":1,\"method\":\"common.db.login\",\"params\":[\"admin\",{\"password\":\"$PASSWORD\"},\"en\"]}" \
        "http://127.0.0.1:$PORT/$DB/rpc/" 2>/dev/null) || return 1
    case "$out" in *'"result":['*) return 0;; *) return 1;; esac
}
running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${TRYTON_RESET:-}" = 1 ] && running; then
    stamp "TRYTON_RESET=1: stopping the server"
    FERRY_TRYTON_LOCKED=1 "$HERE/down.sh" "$DIR" >&2
    rm -f "$DBFILE" "$DBFILE-wal" "$DBFILE-shm"
fi

# Fast path: another test process already brought it up.
if running && rpc_up && login_ok; then
    stamp "trytond already up (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    exit 0
fi

# The template is rebuilt when the module list or the master-data script changes.
MODULES="company currency country party product stock account account_invoice sale sale_price_list
         web_user web_shop carrier stock_package_shipping"
VERSION=$( { echo "$SERIES $MODULES"; cat "$HERE/setup_master.py"; } | sha256sum | cut -c1-16)

# ---------------------------------------------------------------- 1. venv
if [ ! -x "$VENV/bin/trytond" ] || [ "$(cat "$VENV/.ferry-modules" 2>/dev/null)" != "$MODULES" ]; then
    stamp "creating venv $VENV"
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed"'
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    pkgs=("trytond==$SERIES" "proteus==$SERIES")
    for m in $MODULES; do pkgs+=("trytond-${m//_/-}==$SERIES"); done
    "$VENV/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" >&2
    echo "$MODULES" > "$VENV/.ferry-modules"
    stamp "venv ready ($(du -sh "$VENV" | cut -f1))"
fi

# ---------------------------------------------------------------- 2. config + database
mkdir -p "$DBDIR"
cat > "$CONF" <<CONF
[database]
uri = sqlite://
path = $DBDIR
list = True
[web]
listen = 127.0.0.1:$PORT
[session]
# tests log in often from many processes; keep brute-force protection but relax it
max_attempt = 50
CONF
printf '%s\n' "$PASSWORD" > "$DIR/admin.pass"
chmod 600 "$DIR/admin.pass"
export TRYTOND_CONFIG=$CONF
unset TRYTOND_DATABASE_URI   # the config file decides (sqlite://)

if [ "$(cat "$DIR/pristine.version" 2>/dev/null)" != "$VERSION" ]; then
    # stale or missing template: rebuild it and drop a database made from an older one
    if running; then FERRY_TRYTON_LOCKED=1 "$HERE/down.sh" "$DIR" >&2; fi
    rm -f "$DIR/pristine.sqlite" "$DIR/pristine.version" "$DBFILE" "$DBFILE-wal" "$DBFILE-shm"
    stamp "initialising database (modules: $(echo $MODULES))"
    : > "$DBFILE"      # the sqlite backend refuses a database file that does not exist
    TRYTONPASSFILE=$DIR/admin.pass "$VENV/bin/trytond-admin" -c "$CONF" -d "$DB" \
        --email admin@example.com --activate-dependencies -u $MODULES \
        > "$DIR/init.log" 2>&1 || { tail -30 "$DIR/init.log" >&2; rm -f "$DBFILE"; exit 1; }
    stamp "modules activated; loading master data"
    "$VENV/bin/python" "$HERE/setup_master.py" "$DB" > "$DIR/master.txt" 2>>"$DIR/init.log" \
        || { echo "master data setup failed, see $DIR/init.log" >&2; tail -20 "$DIR/init.log" >&2; rm -f "$DBFILE"; exit 1; }
    stamp "master data: $(cat "$DIR/master.txt")"
    "$VENV/bin/python" - "$DBFILE" "$DIR/pristine.sqlite" <<'PY'
import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); dst.close(); src.close()   # WAL-safe copy
PY
    echo "$VERSION" > "$DIR/pristine.version"
    stamp "pristine template kept: $DIR/pristine.sqlite"
elif [ ! -s "$DBFILE" ]; then
    stamp "copying pristine template to $DBFILE"
    cp "$DIR/pristine.sqlite" "$DBFILE"
fi

# ---------------------------------------------------------------- 3. server
if ! running; then
    if rpc_up; then
        echo "something else already answers on 127.0.0.1:$PORT" >&2
        exit 1
    fi
    stamp "starting trytond on 127.0.0.1:$PORT"
    # -d preloads the pool so the first request is fast; --pidfile writes trytond's own pid.
    # setsid: the server must outlive the test process that happened to start it.
    setsid nohup "$VENV/bin/trytond" -c "$CONF" -d "$DB" --pidfile "$PIDFILE" \
        < /dev/null > "$LOG" 2>&1 9>&- &
fi
for _ in $(seq 1 300); do
    if rpc_up && login_ok; then break; fi
    sleep 0.2
done
login_ok || { echo "trytond did not answer a login; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
stamp "trytond up: pid $(cat "$PIDFILE"), http://127.0.0.1:$PORT/$DB/rpc/ (admin / \$TRYTON_ADMIN_PASSWORD)"
