#!/usr/bin/env bash
# down.sh DIR — stop the mariadbd up.sh started in DIR (by its pid file; a server it found running is left alone).
set -euo pipefail
DIR=${1:?usage: down.sh DIR}
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
[ -e "$DIR/started-here" ] && [ -s "$DIR/mariadbd.pid" ] || exit 0
pid=$(cat "$DIR/mariadbd.pid")
if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
fi
rm -f "$DIR/started-here"
