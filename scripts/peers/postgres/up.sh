#!/usr/bin/env bash
# up.sh DIR PORT — a PostgreSQL for the sql connector's tests and benchmark on 127.0.0.1:PORT, user
# postgres without password (trust, loopback only). Each test creates and drops a database of its own.
#
#   1. a server already answering there as postgres (the machine's own, a second test run) is used as it is;
#   2. otherwise a private cluster DIR/data is made with the installed initdb (Debian's `postgresql`
#      package, installed with apt-get when missing) and started in the background (pid in DIR/data).
#
# Runs under an exclusive flock on DIR/.lock (the server does not inherit it). Stop with down.sh DIR (stops only a cluster this script made).
set -euo pipefail

DIR=${1:?usage: up.sh DIR PORT}
PORT=${2:?usage: up.sh DIR PORT}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
exec 9>"$DIR/.lock"
flock 9

# apt-get needs root: sudo when this script is not root.
SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
say() { printf '[postgres-up] %s\n' "$*" >&2; }
answers() { PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }

if command -v psql >/dev/null && answers; then
    say "PostgreSQL answers on 127.0.0.1:$PORT: using it"
    exit 0
fi

bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null && dirname "$(command -v initdb)" && return 0
    return 1
}
if ! BIN=$(bindir) || ! command -v psql >/dev/null; then
    say "installing PostgreSQL (apt-get install postgresql)"
    # Debian's package would make and start a cluster of its own on 5432 (password logins over TCP): not wanted.
    $SUDO mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
        || echo 'create_main_cluster = false' | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    BIN=$(bindir)
fi

# initdb and the server refuse to run as root: the package's postgres user runs them.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DATA=$DIR/data
if [ ! -s "$DATA/PG_VERSION" ]; then
    say "initdb $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR" "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
fi
say "starting on 127.0.0.1:$PORT"
as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" -w -t 60 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off -c max_connections=200" start >&2 9>&- \
    || { tail -30 "$DIR/postgres.log" >&2; exit 1; }
answers || { say "started, but does not answer as postgres"; exit 1; }
touch "$DIR/started-here"
say "up"
