#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server on 127.0.0.1 for the `postgres` tests.
#
#   eval "$(scripts/start_postgres.sh)"   # exports RESNEXT_NAS_TEST_POSTGRES
#   python -m pytest -m postgres
#
# Idempotent: installs the postgresql package only if no server binaries exist, keeps its
# cluster in $RESNEXT_NAS_PG_DIR (default /tmp/resnext-nas-pg), and when that cluster is already
# running just prints its URL again. stdout carries only the export line; the rest goes to stderr.
# Stop it with: scripts/start_postgres.sh stop
set -euo pipefail

DIR=${RESNEXT_NAS_PG_DIR:-/tmp/resnext-nas-pg}
DB=resnext_nas
ROLE=resnext_nas
PASSWORD=resnext_nas

log() { echo "start_postgres: $*" >&2; }

bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BIN=$(bindir)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN=$(bindir)
fi

# initdb and postgres refuse to run as root: run them as the postgres user.
AS=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    AS=(runuser -u postgres --)
fi

mkdir -p "$DIR"
[ -n "${AS[*]}" ] && chown postgres "$DIR"

if [ "${1:-}" = stop ]; then
    "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" stop -m fast >&2 || true
    exit 0
fi

if [ ! -f "$DIR/data/PG_VERSION" ]; then
    log "initialising a cluster in $DIR/data"
    "${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync >&2
fi

if "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    PORT=$(cat "$DIR/port")
    log "already running on port $PORT"
else
    # The port of the cluster's last start while it is free, so that a server started again
    # keeps its URL (a command the stop interrupted resumes as typed); else one the kernel picks.
    PORT=$(python3 - "$DIR/port" <<'PY'
import socket
import sys


def free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres binds
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


try:
    last = int(open(sys.argv[1]).read())
except (OSError, ValueError):
    last = 0
print((last and free(last)) or free(0))
PY
)
    echo "$PORT" > "$DIR/port"
    log "starting on 127.0.0.1:$PORT"
    "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" >&2
fi

PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [ -z "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]; then
    "${PSQL[@]}" -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ -z "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    "${PSQL[@]}" -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

echo "export RESNEXT_NAS_TEST_POSTGRES=postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
