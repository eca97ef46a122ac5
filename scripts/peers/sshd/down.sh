#!/usr/bin/env bash
# down.sh DIR — stop the sshd that up.sh started in DIR (by its pid file; nothing else is touched).
set -euo pipefail
DIR=${1:?usage: down.sh DIR}
PIDFILE=$DIR/sshd.pid
if [ -d "$DIR" ]; then
    exec 9>"$DIR/.lock"
    flock 9      # wait for a running up.sh
fi
[ -s "$PIDFILE" ] || { echo "no sshd pid file in $DIR" >&2; exit 0; }
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "sshd (pid $pid) stopped" >&2
fi
rm -f "$PIDFILE" "$PIDFILE.launch"
