#!/usr/bin/env bash
# Installs the pinned aiosmtpd (PyPI), a real SMTP server, into a venv: `install.sh [DIR]` (default
# target/smtp). Idempotent: a venv that already has the pinned version is left as it is. Prints the path of
# the venv's python. The alert tests (crates/server/tests/alerts.rs) start one sink each with it:
#   python -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox MAILDIR
# (started early by scripts/test.sh; the tests install it themselves when run alone; the install is locked).
set -euo pipefail
VERSION=1.4.6
DIR=${1:-$(cd "$(dirname "$0")/../../.." && pwd)/target/smtp}
mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9
if [ -x "$DIR/venv/bin/python" ] && [ "$(cat "$DIR/venv/.ferry-version" 2>/dev/null)" = "$VERSION" ]; then
    echo "$DIR/venv/bin/python"
    exit 0
fi
PY=${PYTHON:-python3}
rm -rf "$DIR/venv"
"$PY" -m venv "$DIR/venv" >&2
"$DIR/venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$VERSION" >&2
echo "$VERSION" >"$DIR/venv/.ferry-version"
echo "$DIR/venv/bin/python"
