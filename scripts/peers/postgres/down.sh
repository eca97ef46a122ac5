#!/usr/bin/env bash
# down.sh DIR — stop the cluster up.sh made in DIR (a server it found running is left alone).
set -euo pipefail
DIR=${1:?usage: down.sh DIR}
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/.lock"
flock 9
[ -e "$DIR/started-here" ] && [ -s "$DIR/data/postmaster.pid" ] || exit 0
BIN=$(dirname "$(readlink -f /proc/"$(head -1 "$DIR/data/postmaster.pid")"/exe)")
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2; else "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2; fi
rm -f "$DIR/started-here"
