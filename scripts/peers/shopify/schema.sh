#!/usr/bin/env bash
# scripts/peers/shopify/schema.sh DIR
#
# Shopify's official Admin GraphQL schema, API version 2026-10, as an introspection result:
# `npm pack @shopify/dev-mcp@1.16.0` (Shopify's own package, which ships the schemas it serves to its
# MCP tools) into DIR, then package/dist/data/admin_2026-10.json.gz unzipped to DIR/admin_2026-10.json.
# The connector's schema test and the emulator (scripts/peers/shopify/server.mjs) both use this file.
#
# Idempotent (does nothing when DIR/admin_2026-10.json is there and came from the pinned tarball) and
# flock-protected (DIR/.schema.lock), so parallel tests can all call it. Prints the schema's path.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DEV_MCP_VERSION=1.16.0
API_VERSION=2026-10
DIR=$(realpath -m "$1")
OUT="$DIR/admin_$API_VERSION.json"
STAMP="$DIR/.schema-source"
mkdir -p "$DIR"
exec 9>"$DIR/.schema.lock"
flock 9
if [ -s "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "@shopify/dev-mcp@$DEV_MCP_VERSION" ]; then
  echo "$OUT"; exit 0
fi
TARBALL="$DIR/shopify-dev-mcp-$DEV_MCP_VERSION.tgz"
if [ ! -s "$TARBALL" ]; then
  (cd "$DIR" && npm pack --prefer-offline --loglevel=error "@shopify/dev-mcp@$DEV_MCP_VERSION" >/dev/null) \
    || { echo "[shopify-schema] npm pack @shopify/dev-mcp@$DEV_MCP_VERSION failed" >&2; exit 1; }
fi
[ -s "$TARBALL" ] || { echo "[shopify-schema] $TARBALL missing after npm pack" >&2; exit 1; }
TMP=$(mktemp "$OUT.XXXXXX")
trap 'rm -f "$TMP"' EXIT
tar -xzOf "$TARBALL" "package/dist/data/admin_$API_VERSION.json.gz" | gunzip -c >"$TMP" \
  || { echo "[shopify-schema] package/dist/data/admin_$API_VERSION.json.gz not found in $TARBALL" >&2; exit 1; }
# An introspection result: {"data":{"__schema":…}} or {"__schema":…}.
grep -q '"__schema"' "$TMP" || { echo "[shopify-schema] $TARBALL's admin_$API_VERSION.json.gz is not an introspection result" >&2; exit 1; }
chmod 644 "$TMP"; mv "$TMP" "$OUT"
echo "@shopify/dev-mcp@$DEV_MCP_VERSION" >"$STAMP"
echo "$OUT"
