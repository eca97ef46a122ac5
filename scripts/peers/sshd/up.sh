#!/usr/bin/env bash
# up.sh DIR PORT — bring up a throw-away OpenSSH SFTP server for Ferry's SFTP tests and benchmarks.
#
#   1. Debian's openssh-server: /usr/sbin/sshd when installed, else the openssh-server and
#      openssh-sftp-server packages fetched with `apt-get download` and unpacked into DIR/openssh
#      (nothing is installed system-wide: no service is started on port 22, no account is created);
#   2. a throw-away ed25519 host key, user key and authorized_keys file, its own sshd_config and a
#      known_hosts file for 127.0.0.1:PORT, all in DIR (kept across runs, so known_hosts stays valid);
#   3. sshd -D (not daemonised) on 127.0.0.1:PORT in the background (pid in DIR/sshd.pid), SFTP only
#      (ForceCommand internal-sftp), public-key authentication only.
#
# sshd runs unprivileged: started as root it drops to `nobody` (setpriv), which is then the SFTP user;
# started by another user it runs as that user. The login name is in DIR/user, its uid in DIR/uid.
# Password authentication is not offered: an unprivileged sshd cannot check system passwords, and the
# test user is not given one (no system account is touched). Tests make their folders under DIR/data.
#
# Safe to call concurrently: the script holds an exclusive flock on DIR/.lock, and a call that finds
# the server up returns at once. Stop with down.sh DIR.
set -euo pipefail

DIR=${1:?usage: up.sh DIR PORT}
PORT=${2:?usage: up.sh DIR PORT}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
exec 9>"$DIR/.lock"
flock 9

PIDFILE=$DIR/sshd.pid
LOG=$DIR/sshd.log
running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
banner_ok() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; head -c 8 <&3" 2>/dev/null | grep -q '^SSH-2.0'; }

if running && banner_ok; then
    echo "sshd already up (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT" >&2
    exit 0
fi

# ---------------------------------------------------------------- 1. the server binary
SSHD=/usr/sbin/sshd
if [ ! -x "$SSHD" ]; then
    SSHD=$DIR/openssh/usr/sbin/sshd
    if [ ! -x "$SSHD" ]; then
        echo "unpacking Debian's openssh-server into $DIR/openssh" >&2
        debs=$(mktemp -d)
        fetch() { (cd "$debs" && apt-get download openssh-server openssh-sftp-server >&2); }
        fetch || { apt-get update -qq >&2 && fetch; }
        for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$DIR/openssh"; done
        rm -rf "$debs"
    fi
fi

# ---------------------------------------------------------------- 2. keys, config, data folder
if [ "$(id -u)" = 0 ]; then
    RUN_AS=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups)
    USER_NAME=nobody
else
    RUN_AS=()
    USER_NAME=$(id -un)
fi
[ -s "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$DIR/host_ed25519"
[ -s "$DIR/user_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-user -f "$DIR/user_ed25519"
cp "$DIR/user_ed25519.pub" "$DIR/authorized_keys"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$DIR/known_hosts"
echo "$USER_NAME" > "$DIR/user"
id -u "$USER_NAME" > "$DIR/uid"
mkdir -p "$DIR/data"
cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $PIDFILE
AuthorizedKeysFile $DIR/authorized_keys
# the files live in a throw-away folder owned by the test user, not in a home directory
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
Subsystem sftp internal-sftp
ForceCommand internal-sftp
AllowTcpForwarding no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 50
LogLevel INFO
CONF
if [ "$(id -u)" = 0 ]; then
    chown -R "$USER_NAME" "$DIR/host_ed25519" "$DIR/authorized_keys" "$DIR/data"
    chown "$USER_NAME" "$DIR"
fi
chmod 600 "$DIR/host_ed25519" "$DIR/user_ed25519"

# ---------------------------------------------------------------- 3. server
if ! running; then
    if listening; then
        echo "something else already listens on 127.0.0.1:$PORT" >&2
        exit 1
    fi
    rm -f "$PIDFILE"
    # setsid: the server must outlive the test process that happened to start it. -D: not detached,
    # so its pid is the one written; -e: log to stderr (the log file).
    setsid nohup "${RUN_AS[@]}" "$SSHD" -D -e -f "$DIR/sshd_config" < /dev/null > "$LOG" 2>&1 9>&- &
    echo $! > "$PIDFILE.launch"
fi
for _ in $(seq 1 100); do
    if banner_ok; then break; fi
    sleep 0.1
done
banner_ok || { echo "sshd did not answer on 127.0.0.1:$PORT; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
[ -s "$PIDFILE" ] || cp "$PIDFILE.launch" "$PIDFILE"
echo "sshd up: pid $(cat "$PIDFILE"), sftp://$USER_NAME@127.0.0.1:$PORT$DIR/data (key $DIR/user_ed25519, known_hosts $DIR/known_hosts)" >&2
