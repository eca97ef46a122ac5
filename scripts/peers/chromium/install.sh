#!/usr/bin/env bash
# Installs what the dashboard's browser test drives (crates/cli/tests/dashboard_browser.rs):
#   - Debian's chromium (apt) at /usr/bin/chromium, unless it is there already;
#   - playwright-core (npm, pinned below; it downloads no browser of its own) into DIR/node_modules.
# `install.sh [DIR]` (default target/chromium). Idempotent and quick when both are installed; locked, so
# scripts/test.sh (which starts it beside the build) and the test itself can both call it. Prints DIR.
set -euo pipefail
PLAYWRIGHT_CORE=1.65.1
DIR=${1:-$(cd "$(dirname "$0")/../../.." && pwd)/target/chromium}
mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9
if [ ! -x /usr/bin/chromium ]; then
    SUDO=()
    if [ "$(id -u)" != 0 ]; then SUDO=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine's package lists may be missing or stale: update once if the install fails.
    if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2; then
        "${SUDO[@]}" apt-get update -qq >&2
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
    fi
fi
if [ "$(cat "$DIR/.ferry-version" 2>/dev/null)" != "$PLAYWRIGHT_CORE" ] || [ ! -f "$DIR/node_modules/playwright-core/package.json" ]; then
    rm -rf "$DIR/node_modules" "$DIR/package.json" "$DIR/package-lock.json"
    (cd "$DIR" && printf '{"name":"ferry-browser-tests","private":true}\n' >package.json \
        && npm install --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_CORE" >&2)
    echo "$PLAYWRIGHT_CORE" >"$DIR/.ferry-version"
fi
echo "$DIR"
