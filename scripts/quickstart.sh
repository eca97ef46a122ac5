#!/usr/bin/env bash
# The quickstart: `scripts/quickstart.sh [WORK_DIR]`
#
# Builds Ferry, copies examples/quickstart (an ERP's CSV export + a few web orders) to WORK_DIR
# (default target/quickstart), then:
#   1. checks the connections;
#   2. syncs every flow: products, prices, stock, customers ERP → JSONL shop; orders shop → ERP CSV;
#   3. syncs again: nothing is written;
#   4. changes one price in the ERP export, shows the dry run, and syncs: exactly one record is written.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/quickstart}

echo "==> building ferry (release)"
cargo build --release -q -p ferry-cli
FERRY=$PWD/target/release/ferry

rm -rf "$WORK" && mkdir -p "$WORK" && cp -r examples/quickstart/. "$WORK"/
CONFIG=$WORK/ferry.toml
say() { printf '\n==> %s\n' "$*"; }

say "ferry check"
"$FERRY" -c "$CONFIG" check

say "ferry sync --all   (first run: everything is new)"
"$FERRY" -c "$CONFIG" sync --all

say "ferry sync --all   (second run: nothing changed, nothing written)"
"$FERRY" -c "$CONFIG" sync --all

say "the ERP changes the price of SPD-1001 from 49,95 to 52,50"
sed -i 's/^\(\xef\xbb\xbf\)\{0,1\}SPD-1001;\(.*\);49,95;/\1SPD-1001;\2;52,50;/' "$WORK/erp/products.csv"

say "ferry sync products --dry-run"
"$FERRY" -c "$CONFIG" sync products --dry-run

say "ferry sync products   (one record written)"
"$FERRY" -c "$CONFIG" sync products

say "ferry status"
"$FERRY" -c "$CONFIG" status

say "ferry xref SPD-1001"
"$FERRY" -c "$CONFIG" xref SPD-1001

printf '\nThe shop: %s/shop/*.jsonl   The ERP order import: %s/erp/orders.csv\n' "$WORK" "$WORK"
