#!/usr/bin/env bash
# Installs the pinned schemathesis (PyPI) into a venv: `install.sh [DIR]` (default target/schemathesis).
# Idempotent: a venv that already has the pinned version is left as it is. Prints the `st` path.
# Used by crates/cli/tests/openapi_fuzz.rs (and started early by scripts/test.sh).
set -euo pipefail
VERSION=4.32.5
DIR=${1:-$(cd "$(dirname "$0")/../../.." && pwd)/target/schemathesis}
mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9
if [ -x "$DIR/venv/bin/st" ] && [ "$(cat "$DIR/venv/.ferry-version" 2>/dev/null)" = "$VERSION" ]; then
    echo "$DIR/venv/bin/st"
    exit 0
fi
PY=${PYTHON:-python3}
rm -rf "$DIR/venv"
"$PY" -m venv "$DIR/venv" >&2
"$DIR/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
echo "$VERSION" >"$DIR/venv/.ferry-version"
echo "$DIR/venv/bin/st"
