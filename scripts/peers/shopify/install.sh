#!/usr/bin/env bash
# scripts/peers/shopify/install.sh DIR
#
# Installs what scripts/peers/shopify/{validate.mjs,server.mjs} import — graphql-js, pinned — into
# DIR/node_modules (`npm install --prefix DIR`). ES modules ignore NODE_PATH: validate.mjs looks for it in
# node_modules beside the schema file (so install into the same DIR as schema.sh), server.mjs in its peer DIR;
# $SHOPIFY_NODE_MODULES overrides both (see load-graphql.mjs).
# Idempotent and quick once installed; flock-protected (DIR/.install.lock). Prints DIR.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
GRAPHQL_VERSION=16.15.0
DIR=$(realpath -m "$1")
mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9
if ! grep -qs "\"version\": \"$GRAPHQL_VERSION\"" "$DIR/node_modules/graphql/package.json"; then
  [ -f "$DIR/package.json" ] || printf '{"name":"ferry-peer-shopify","private":true}\n' >"$DIR/package.json"
  npm install --prefix "$DIR" --prefer-offline --no-audit --no-fund --loglevel=error "graphql@$GRAPHQL_VERSION" >&2 \
    || { echo "[shopify-install] npm install graphql@$GRAPHQL_VERSION failed" >&2; exit 1; }
fi
echo "$DIR"
