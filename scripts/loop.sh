#!/usr/bin/env bash
# The whole loop, ERP ⇄ shop, against a real Tryton and a real Vendure: `scripts/loop.sh [WORK_DIR]`
#
#  1. brings up Tryton 8.2 (127.0.0.1:18100) and Vendure 3.7 (127.0.0.1:18400) with the project's peer
#     scripts, in WORK_DIR/peers (default target/loop; first run installs them from PyPI / npm);
#  2. seeds a few products with stock and a B2B customer in Tryton (JSON-RPC, scripts/loop_peers.py);
#  3. ferry sync products, customers, prices, stock: Tryton → Vendure;
#  4. a guest buys through Vendure's Shop API;
#  5. ferry sync orders: the web order becomes a confirmed Tryton sale (exactly once: synced twice);
#  6. the warehouse ships it in Tryton (carrier + tracking code);
#  7. ferry sync shipments and stock: the fulfilment and the stock Tryton now counts reach the shop;
#  8. a price changes in Tryton: the next products run writes exactly that one record.
#
# Running it again reuses the peers, the seeded data and Ferry's state: only the new order moves.
# Env: LOOP_TRYTON_PORT, LOOP_VENDURE_PORT, LOOP_KEEP_PEERS=1 (leave the servers running at the end),
#      FERRY (a ferry binary to use instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(realpath -m "${1:-${CARGO_TARGET_DIR:-$ROOT/target}/loop}")
TRYTON_PORT=${LOOP_TRYTON_PORT:-18100}
VENDURE_PORT=${LOOP_VENDURE_PORT:-18400}
export TRYTON_URL=http://127.0.0.1:$TRYTON_PORT TRYTON_DB=tryton
export TRYTON_PASSWORD=${TRYTON_PASSWORD:-admin-pass-123} TRYTON_ADMIN_PASSWORD=${TRYTON_PASSWORD:-admin-pass-123}
export VENDURE_URL=http://127.0.0.1:$VENDURE_PORT VENDURE_ADMIN_PASSWORD=${VENDURE_ADMIN_PASSWORD:-superadmin}
export FERRY_LOG=${FERRY_LOG:-warn}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
mkdir -p "$WORK/peers"

stop_peers() {
    if [ "${LOOP_KEEP_PEERS:-0}" != 1 ]; then
        scripts/peers/tryton/down.sh "$WORK/peers/tryton" >/dev/null 2>&1 || true
        scripts/peers/vendure/down.sh "$WORK/peers/vendure" >/dev/null 2>&1 || true
    fi
}
trap stop_peers EXIT

step "1. starting Tryton on :$TRYTON_PORT and Vendure on :$VENDURE_PORT (logs in $WORK/peers; the first run installs them)"
scripts/peers/tryton/up.sh "$WORK/peers/tryton" "$TRYTON_PORT" >"$WORK/peers/tryton-up.log" 2>&1 &
tryton_pid=$!
scripts/peers/vendure/up.sh "$WORK/peers/vendure" "$VENDURE_PORT" >"$WORK/peers/vendure-up.log" 2>&1 &
vendure_pid=$!
if [ -z "${FERRY:-}" ]; then
    echo "    building ferry meanwhile (cargo build -p ferry-cli)"
    cargo build -q -p ferry-cli
    # A copy: a target dir shared with other checkouts may get another build's binary at any time.
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/ferry" "$WORK/ferry"
    FERRY=$WORK/ferry
fi
wait "$tryton_pid" || { tail -30 "$WORK/peers/tryton-up.log"; exit 1; }
wait "$vendure_pid" || { tail -30 "$WORK/peers/vendure-up.log"; exit 1; }
echo "    Tryton $TRYTON_URL (admin), Vendure $VENDURE_URL/admin (superadmin / superadmin)"

# The example config with this run's ports.
CONFIG=$WORK/ferry.toml
sed -e "s#http://127.0.0.1:18100#$TRYTON_URL#" -e "s#http://127.0.0.1:18400#$VENDURE_URL#" \
    examples/tryton-vendure/ferry.toml >"$CONFIG"
ferry() { echo "    \$ ferry $*"; "$FERRY" -c "$CONFIG" "$@" 2>&1 | sed 's/^/    /'; return "${PIPESTATUS[0]}"; }
peers() { python3 scripts/loop_peers.py "$@"; }

step "2. the ERP: products with stock and a B2B customer in Tryton"
peers seed
ferry check

step "3. ERP → shop: products, customers, prices, stock"
for flow in products customers prices stock; do ferry sync "$flow"; done
peers show

step "4. a guest buys online (Vendure Shop API)"
ORDER=$(peers order)

step "5. shop → ERP: the web order becomes a confirmed Tryton sale (a second run creates nothing)"
ferry sync orders
ferry sync orders
ferry xref "$ORDER"
peers show "$ORDER"

step "6. the warehouse ships it in Tryton"
peers ship "$ORDER"

step "7. ERP → shop: the shipment (fulfilment + tracking) and the stock Tryton now counts"
ferry sync shipments
ferry sync stock
peers show "$ORDER"

step "8. the ERP raises the mug's price; the next run writes that one record"
python3 - <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("loop_peers", "scripts/loop_peers.py")
lp = importlib.util.module_from_spec(spec); spec.loader.exec_module(lp)
t = lp.Tryton()
tpl = t.one("product.template", [["code", "=", "LOOP-MUG"]])
old = t("product.template", "read", [tpl], ["list_price"])[0]["list_price"]["decimal"]
new = f"{float(old) + 1:.2f}"
t("product.template", "write", [tpl], {"list_price": lp.dec(new)})
print(f"  LOOP-MUG: {float(old):.2f} → {new} AUD in Tryton")
EOF
ferry sync products --dry-run
ferry sync products
peers show
ferry status

printf '\nDone. Config: %s   State: %s/ferry-state.db\n' "$CONFIG" "$WORK"
[ "${LOOP_KEEP_PEERS:-0}" = 1 ] && echo "Peers left running (LOOP_KEEP_PEERS=1): stop them with scripts/peers/{tryton,vendure}/down.sh $WORK/peers/{tryton,vendure}"
exit 0
