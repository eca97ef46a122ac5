#!/usr/bin/env bash
# up.sh DIR PORT — a MariaDB for the sql connector's tests and benchmark on 127.0.0.1:PORT, user root
# without password (loopback only). Each test creates and drops a database of its own.
#
#   1. a server already answering there as root (the machine's own, a second test run) is used as it is;
#   2. otherwise a private data directory DIR/data is made with the installed mariadb-install-db (Debian's
#      `mariadb-server` package, installed with apt-get when missing) and mariadbd started in the
#      background (pid in DIR/mariadbd.pid).
#
# Runs under an exclusive flock on DIR/.lock (the server does not inherit it). Stop with down.sh DIR (stops only a server this script started).
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
say() { printf '[mariadb-up] %s\n' "$*" >&2; }
client() { command -v mariadb || command -v mysql; }
answers() { "$(client)" --protocol=tcp -h 127.0.0.1 -P "$PORT" -uroot --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1; }

if client >/dev/null && answers; then
    say "MariaDB answers on 127.0.0.1:$PORT: using it"
    exit 0
fi
if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-install-db >/dev/null || ! client >/dev/null; then
    say "installing MariaDB (apt-get install mariadb-server)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >&2 || { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >&2; }
    # The package may have started its own server (root by unix socket only): stop it, ours takes the port.
    if ! answers; then $SUDO mariadb-admin --protocol=socket -uroot shutdown >/dev/null 2>&1 || true; fi
    if answers; then say "up (the package's server)"; exit 0; fi
fi
SERVER=$(command -v mariadbd || echo /usr/sbin/mariadbd)

# As root the server runs as the package's mysql user.
USER_OPT=()
if [ "$(id -u)" = 0 ]; then USER_OPT=(--user=mysql); fi
DATA=$DIR/data
if [ ! -d "$DATA/mysql" ]; then
    say "mariadb-install-db $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown mysql: "$DIR" "$DATA"
    mariadb-install-db --no-defaults --datadir="$DATA" "${USER_OPT[@]}" --auth-root-authentication-method=normal \
        --skip-test-db >"$DIR/install-db.log" 2>&1 || { cat "$DIR/install-db.log" >&2; exit 1; }
fi
say "starting on 127.0.0.1:$PORT"
nohup "$SERVER" --no-defaults --datadir="$DATA" "${USER_OPT[@]}" --port="$PORT" --bind-address=127.0.0.1 \
    --socket="$DIR/mariadbd.sock" --pid-file="$DIR/mariadbd.pid" --log-error="$DIR/mariadbd.log" \
    --innodb-flush-log-at-trx-commit=2 --max-connections=300 >/dev/null 2>&1 9>&- &
for _ in $(seq 1 120); do
    answers && break
    sleep 0.5
done
answers || { tail -30 "$DIR/mariadbd.log" >&2; exit 1; }
touch "$DIR/started-here"
say "up"
