#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: `scripts/test.sh`.
#
# 1. starts the real peers (Tryton from PyPI, Vendure from npm, OpenSSH's sshd from Debian for the SFTP
#    tests) in the background, installing them on first use, while the workspace compiles;
# 2. runs every test (unit, property, engine, CLI, live Tryton and Vendure) with cargo-nextest in parallel
#    (cargo test when nextest is not installed);
# 3. stops the peers it started.
#
# Env: FERRY_PEERS_DIR (default target/peers), FERRY_SKIP_PEERS=1 to run only tests that need no peer.
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
    SSHD_PORT=${FERRY_TEST_SSHD_PORT:-18302}
    for spec in "tryton $TRYTON_PORT" "vendure $VENDURE_PORT" "sshd $SSHD_PORT"; do
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
fi

# The OpenAPI fuzz test (crates/cli/tests/openapi_fuzz.rs) uses the pinned schemathesis from PyPI: install
# it while the workspace compiles (the test installs it itself when run alone; the install is locked).
ST_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/schemathesis
mkdir -p "$ST_DIR"
scripts/peers/schemathesis/install.sh "$ST_DIR" >"$ST_DIR/install.log" 2>&1 &

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

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${FEATURES[@]}" --no-fail-fast
else
    cargo test "${FEATURES[@]}" --no-fail-fast
fi
