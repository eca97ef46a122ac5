#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: `scripts/test.sh`.
#
# 1. starts the real peers (Tryton from PyPI, Vendure from npm; PostgreSQL and MariaDB from the machine,
#    or Debian's packages; OpenSSH's sshd from Debian for the SFTP tests) in the background, installing them
#    on first use, while the workspace compiles;
# 2. runs every test (unit, property, engine, CLI, live Tryton and Vendure) with cargo-nextest in parallel
#    (cargo test when nextest is not installed);
# 3. stops the peers it started.
#
# Env: FERRY_PEERS_DIR (default target/peers), FERRY_SKIP_PEERS=1 to run only tests that need no peer,
#      FERRY_TEST_{TRYTON,VENDURE,WEBHOOK,POSTGRES,MYSQL,SHOPIFY,MEDUSA,MEDUSA_WEBHOOK}_PORT to move the peers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The tests' support modules look for the peers under <target dir>/peers.
export FERRY_PEERS_DIR=${FERRY_PEERS_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/peers}
mkdir -p "$FERRY_PEERS_DIR"
FEATURES=(--workspace --all-features)

started=()
cleanup() {
    for peer in "${started[@]}"; do
        "scripts/peers/$peer/down.sh" "$FERRY_PEERS_DIR/$peer" >/dev/null 2>&1 || true
        if [ "$peer" = shopify ]; then
            scripts/peers/shopify/down.sh "$FERRY_PEERS_DIR/shopify-private" >/dev/null 2>&1 || true
        fi
    done
}
trap cleanup EXIT

pids=()
if [ "${FERRY_SKIP_PEERS:-0}" != 1 ]; then
    # Ports must match the tests' support modules (crates/connectors/tests/support).
    # FERRY_TEST_*_PORT move them (e.g. a second set of peers beside a running one); the tests read the same.
    TRYTON_PORT=${FERRY_TEST_TRYTON_PORT:-18000}
    VENDURE_PORT=${FERRY_TEST_VENDURE_PORT:-18300}
    WEBHOOK_PORT=${FERRY_TEST_WEBHOOK_PORT:-18301}
    # The sql connector's tests: the machine's PostgreSQL / MariaDB when they answer there, else private ones.
    PG_PORT=${FERRY_TEST_POSTGRES_PORT:-5432}
    MY_PORT=${FERRY_TEST_MYSQL_PORT:-3306}
    SSHD_PORT=${FERRY_TEST_SSHD_PORT:-18302}
    # The Shopify emulator (scripts/peers/shopify); the rate-budget test starts a second one of its own on
    # the next port in $FERRY_PEERS_DIR/shopify-private (stopped below too).
    SHOPIFY_PORT=${FERRY_TEST_SHOPIFY_PORT:-18400}
    for spec in "tryton $TRYTON_PORT" "vendure $VENDURE_PORT" "postgres $PG_PORT" "mariadb $MY_PORT" "sshd $SSHD_PORT" "shopify $SHOPIFY_PORT"; do
        set -- $spec
        if [ -x "scripts/peers/$1/up.sh" ]; then
            echo "[test] starting $1 peer on 127.0.0.1:$2 (log: $FERRY_PEERS_DIR/$1-up.log)"
            # Same settings as crates/connectors/tests/support (the webhook tests listen on 18301; ferry serve routes /hooks/shop to its connection `shop`).
            # The tests' peers run on their default databases (sql.js for Vendure): no DATABASE_URL from the caller's shell.
            WEBHOOK_URL=http://127.0.0.1:$WEBHOOK_PORT/hooks/shop WEBHOOK_SECRET=ferry-test-webhook-secret \
                env -u DATABASE_URL "scripts/peers/$1/up.sh" "$FERRY_PEERS_DIR/$1" "$2" >"$FERRY_PEERS_DIR/$1-up.log" 2>&1 &
            pids+=("$!:$1")
            started+=("$1")
        fi
    done
    # Medusa 2 (npm, on the machine's PostgreSQL) posts its webhooks to a port of its own (the Medusa
    # webhook test and the Vendure ones never share one): crates/connectors/tests/support/medusa.rs.
    MEDUSA_PORT=${FERRY_TEST_MEDUSA_PORT:-18500}
    MEDUSA_WEBHOOK_PORT=${FERRY_TEST_MEDUSA_WEBHOOK_PORT:-18501}
    if [ -x scripts/peers/medusa/up.sh ]; then
        echo "[test] starting medusa peer on 127.0.0.1:$MEDUSA_PORT (log: $FERRY_PEERS_DIR/medusa-up.log)"
        WEBHOOK_URL=http://127.0.0.1:$MEDUSA_WEBHOOK_PORT/hooks/shop WEBHOOK_SECRET=ferry-test-webhook-secret \
            env -u DATABASE_URL scripts/peers/medusa/up.sh "$FERRY_PEERS_DIR/medusa" "$MEDUSA_PORT" >"$FERRY_PEERS_DIR/medusa-up.log" 2>&1 &
        pids+=("$!:medusa")
        started+=("medusa")
    fi
fi

# The PostgreSQL state store's tests (store, engine and tenancy suites on both backends, the multi-process
# test) use the local server (FERRY_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
# This machine kind starts it before a session; start it if it stopped.
if [ -z "${FERRY_TEST_POSTGRES_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "[test] PostgreSQL is not answering on 127.0.0.1:5432; starting it"
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        for v in $(ls /etc/postgresql 2>/dev/null); do pg_ctlcluster --skip-systemctl-redirect "$v" main start || true; done
    fi
fi

# The OpenAPI fuzz test (crates/cli/tests/openapi_fuzz.rs) uses the pinned schemathesis from PyPI: install
# it while the workspace compiles (the test installs it itself when run alone; the install is locked).
ST_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/schemathesis
mkdir -p "$ST_DIR"
scripts/peers/schemathesis/install.sh "$ST_DIR" >"$ST_DIR/install.log" 2>&1 &
# The dashboard's browser test (crates/cli/tests/dashboard_browser.rs) drives Debian's chromium with
# playwright-core from npm: install both while the workspace compiles (the test installs them itself when
# run alone; the install is locked and quick once done).
CHROMIUM_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/chromium
mkdir -p "$CHROMIUM_DIR"
scripts/peers/chromium/install.sh "$CHROMIUM_DIR" >"$CHROMIUM_DIR/install.log" 2>&1 &
# The alert tests (crates/server/tests/alerts.rs) send e-mail to aiosmtpd (PyPI), likewise installed early.
SMTP_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/smtp
mkdir -p "$SMTP_DIR"
scripts/peers/smtp/install.sh "$SMTP_DIR" >"$SMTP_DIR/install.log" 2>&1 &

echo "[test] building tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${FEATURES[@]}" --no-run
else
    cargo test "${FEATURES[@]}" --no-run
fi

for entry in "${pids[@]}"; do
    pid=${entry%%:*}; peer=${entry#*:}
    if ! wait "$pid"; then
        echo "[test] the $peer peer did not start:" >&2
        tail -40 "$FERRY_PEERS_DIR/$peer-up.log" >&2
        exit 1
    fi
    echo "[test] $peer peer up"
done

# The Shopify emulator's own tests (node --test; it must keep to Shopify's documented semantics), beside
# the workspace's tests: they use the schema and graphql-js the emulator's peer folder holds.
node_status=0
if [ "${FERRY_SKIP_PEERS:-0}" != 1 ]; then
    echo "[test] Shopify emulator tests (node --test scripts/peers/shopify/test; log: $FERRY_PEERS_DIR/shopify-node-tests.log)"
    node --test scripts/peers/shopify/test/*.test.mjs >"$FERRY_PEERS_DIR/shopify-node-tests.log" 2>&1 &
    node_pid=$!
fi

rust_status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${FEATURES[@]}" --no-fail-fast || rust_status=$?
else
    cargo test "${FEATURES[@]}" --no-fail-fast || rust_status=$?
fi
if [ -n "${node_pid:-}" ]; then
    wait "$node_pid" || node_status=$?
    tail -12 "$FERRY_PEERS_DIR/shopify-node-tests.log"
    [ "$node_status" = 0 ] || echo "[test] the Shopify emulator's tests FAILED (see $FERRY_PEERS_DIR/shopify-node-tests.log)" >&2
fi
[ "$rust_status" = 0 ] && [ "$node_status" = 0 ]
