#!/usr/bin/env bash
# Runs moto (a Route53 API emulator) on 127.0.0.1:PORT in the foreground; the
# script execs moto_server, so the caller's child PID is the server.
#   e2e/dns/moto.sh PORT
# The venv lives in $EXTDNS_CACHE/moto-venv and is created on first use (~45 s).
# Clients must sign requests with SigV4 for service route53 (any key, any region);
# POST /moto-api/reset wipes all state.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/lib.sh"

MOTO_VERSION=5.2.5
[ $# -eq 1 ] && [[ $1 =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT" >&2; exit 2; }
PORT=$1
VENV="$EXTDNS_CACHE/moto-venv"
# Written last, so a venv whose pip install was interrupted is rebuilt.
DONE_MARKER="$VENV/.extdns-moto-$MOTO_VERSION"

if [ ! -e "$DONE_MARKER" ]; then
    mkdir -p "$EXTDNS_CACHE"
    exec 9>"$EXTDNS_CACHE/moto-venv.lock"
    flock 9
    if [ ! -e "$DONE_MARKER" ]; then
        command -v python3 >/dev/null 2>&1 || dns_ensure_packages python3 python3-venv
        # Debian's python3 has no venv/ensurepip until python3-venv is installed.
        python3 -c 'import venv, ensurepip' 2>/dev/null || dns_ensure_packages python3-venv
        dns_log "creating $VENV with moto[server]==$MOTO_VERSION"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || dns_die "python3 -m venv $VENV failed"
        "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 ||
            dns_die "pip install moto[server]==$MOTO_VERSION into $VENV failed"
        touch "$DONE_MARKER"
    fi
    exec 9>&-
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    dns_die "127.0.0.1:$PORT is already in use; is an old moto still running? (ss -ltnp 'sport = :$PORT')"
fi
dns_log "exec moto_server on 127.0.0.1:$PORT"
exec "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT"
