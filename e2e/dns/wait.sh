#!/usr/bin/env bash
# Waits until a DNS server on 127.0.0.1:PORT answers ZONE's SOA.
#   e2e/dns/wait.sh PORT ZONE [PID]
# With PID (the server started by e2e/dns/server.sh), fails at once when that
# process dies: otherwise a leftover server on the same port could answer the
# probe and hide that ours never came up. Deadline: $DNS_WAIT_DEADLINE_S (20 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/lib.sh"

[ $# -ge 2 ] && [ $# -le 3 ] || { echo "usage: $0 PORT ZONE [PID]" >&2; exit 2; }
PORT=$1 ZONE=$2 PID=${3:-}
DEADLINE_S=${DNS_WAIT_DEADLINE_S:-20}

command -v dig >/dev/null 2>&1 || dns_ensure_packages bind9-dnsutils

deadline=$((SECONDS + DEADLINE_S))
while :; do
    if [ -n "$PID" ] && ! kill -0 "$PID" 2>/dev/null; then
        dns_die "server pid $PID exited before 127.0.0.1:$PORT answered $ZONE SOA"
    fi
    # dig +short prints ";; communications error ..." to stdout when nothing
    # listens, so only an answer line counts.
    if dig +short +time=1 +tries=1 @127.0.0.1 -p "$PORT" "$ZONE" SOA 2>/dev/null | grep -q '^[^;[:space:]]'; then
        exit 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || dns_die "127.0.0.1:$PORT did not answer $ZONE SOA within $DEADLINE_S s"
    sleep 0.05
done
