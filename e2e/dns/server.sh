#!/usr/bin/env bash
# Runs a real authoritative DNS server on 127.0.0.1 for end-to-end tests, in the
# foreground: the script ends by exec'ing the server, so the caller's child PID
# is the server itself and killing it (TERM) stops it. Logs go to stderr.
#
#   e2e/dns/server.sh KIND DIR PORT ZONE [ZONE...]
#     KIND  bind | knot | pdns
#     DIR   scratch dir, recreated empty (config, zone files, journals, sqlite)
#     PORT  DNS port on 127.0.0.1, UDP and TCP
#     ZONE  zones to serve, each starting with SOA, NS ns1.<zone>. and ns1 A 127.0.0.1
#
# Every zone accepts RFC 2136 updates and AXFR signed with the TSIG key
# externaldns-key (hmac-sha256); unsigned updates and transfers are refused.
# pdns also serves its HTTP API on 127.0.0.1:$PDNS_API_PORT (default 18081) with
# X-API-Key $PDNS_API_KEY (default e2e-secret-key).
# Readiness: e2e/dns/wait.sh PORT ZONE PID.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/lib.sh"

TSIG_NAME=externaldns-key
TSIG_ALGORITHM=hmac-sha256
TSIG_SECRET=e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=
PDNS_API_PORT=${PDNS_API_PORT:-18081}
PDNS_API_KEY=${PDNS_API_KEY:-e2e-secret-key}
MARKER=.extdns-dns-server

usage() {
    echo "usage: $0 bind|knot|pdns DIR PORT ZONE [ZONE...]" >&2
    exit 2
}

[ $# -ge 4 ] || usage
KIND=$1 DIR=$2 PORT=$3
shift 3
ZONES=()
for z in "$@"; do
    z=${z%.}
    [[ $z =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || dns_die "invalid zone name '$z'"
    ZONES+=("$z")
done
case $KIND in bind | knot | pdns) ;; *) dns_die "unknown KIND '$KIND' (want bind, knot or pdns)" ;; esac
[[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || dns_die "invalid PORT '$PORT'"
[[ $PDNS_API_PORT =~ ^[0-9]+$ ]] || dns_die "invalid PDNS_API_PORT '$PDNS_API_PORT'"

dns_ensure_packages bind9 bind9-utils bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 sqlite3

# With SO_REUSEPORT a second server on a busy UDP port starts without error and
# then gets half the queries, so a busy port must fail loudly here instead.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    dns_die "127.0.0.1:$PORT is already in use (TCP); is an old server still running? (ss -ltnp 'sport = :$PORT')"
fi
if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hlun "sport = :$PORT" 2>/dev/null)" ]; then
    dns_die "127.0.0.1:$PORT is already in use (UDP); is an old server still running? (ss -lunp 'sport = :$PORT')"
fi
if [ "$KIND" = pdns ] && (exec 3<>"/dev/tcp/127.0.0.1/$PDNS_API_PORT") 2>/dev/null; then
    dns_die "pdns API port 127.0.0.1:$PDNS_API_PORT is already in use; set PDNS_API_PORT"
fi

# Fresh state per run: BIND journals, Knot's rewritten zone files and LMDB, and the
# pdns sqlite file would otherwise leak records from a previous run. The marker
# keeps `rm -rf` away from any dir this script did not create.
case $DIR in "" | / | "$HOME" | "$HOME/") dns_die "refusing to use '$DIR' as DIR" ;; esac
if [ -e "$DIR" ]; then
    if [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -e "$DIR/$MARKER" ]; then
        dns_die "$DIR exists, is not empty and was not made by $0; not deleting it"
    fi
    rm -rf "$DIR"
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
echo "$KIND" >"$DIR/$MARKER"

for z in "${ZONES[@]}"; do
    cat >"$DIR/$z.zone" <<EOF
\$TTL 300
@   IN SOA ns1.$z. hostmaster.$z. ( 1 3600 600 86400 300 )
@   IN NS  ns1.$z.
ns1 IN A   127.0.0.1
EOF
done

run_bind() {
    local conf="$DIR/named.conf" z
    {
        cat <<EOF
key "$TSIG_NAME" { algorithm $TSIG_ALGORITHM; secret "$TSIG_SECRET"; };
options {
    directory "$DIR";
    pid-file "$DIR/named.pid";
    session-keyfile "$DIR/session.key";
    managed-keys-directory "$DIR";
    listen-on port $PORT { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    dnssec-validation no;
    allow-query { any; };
    notify no;
};
// Without this, named opens rndc on 127.0.0.1:953 with /etc/bind/rndc.key.
controls { };
EOF
        for z in "${ZONES[@]}"; do
            cat <<EOF
zone "$z" {
    type primary;
    file "$z.zone";
    allow-update { key "$TSIG_NAME"; };
    allow-transfer { key "$TSIG_NAME"; };
};
EOF
        done
    } >"$conf"
    named-checkconf "$conf" >&2 || dns_die "named-checkconf rejected $conf"
    dns_log "exec named on 127.0.0.1:$PORT for ${ZONES[*]} (dir $DIR)"
    exec named -g -c "$conf"
}

run_knot() {
    local conf="$DIR/knot.conf" z
    # Without an existing database dir knotd still answers queries, but every
    # update fails with SERVFAIL ("DDNS, processing failed (not exists)").
    mkdir -p "$DIR/db"
    {
        cat <<EOF
server:
    rundir: "$DIR"
    listen: 127.0.0.1@$PORT
log:
  - target: stderr
    any: info
database:
    storage: "$DIR/db"
key:
  - id: $TSIG_NAME
    algorithm: $TSIG_ALGORITHM
    secret: $TSIG_SECRET
acl:
  - id: externaldns
    key: $TSIG_NAME
    action: [update, transfer]
template:
  - id: default
    storage: "$DIR"
    file: "%s.zone"
zone:
EOF
        for z in "${ZONES[@]}"; do
            printf '  - domain: %s\n    acl: externaldns\n' "$z"
        done
    } >"$conf"
    knotc -c "$conf" conf-check >&2 || dns_die "knotc conf-check rejected $conf"
    dns_log "exec knotd on 127.0.0.1:$PORT for ${ZONES[*]} (dir $DIR)"
    exec knotd -c "$conf"
}

run_pdns() {
    local conf="$DIR/pdns.conf" db="$DIR/pdns.sqlite3" z
    local schema=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
    [ -f "$schema" ] || dns_die "pdns sqlite schema $schema missing (pdns-backend-sqlite3)"
    sqlite3 "$db" <"$schema" || dns_die "could not create $db from $schema"
    # security-poll-suffix= stops a start-up lookup through the system resolver;
    # allow-axfr-ips= (empty) leaves TSIG-ALLOW-AXFR as the only way to transfer.
    cat >"$conf" <<EOF
launch=gsqlite3
gsqlite3-database=$db
local-address=127.0.0.1
local-port=$PORT
socket-dir=$DIR
daemon=no
guardian=no
disable-syslog=yes
loglevel=4
security-poll-suffix=
default-soa-content=ns1.@ hostmaster.@ 1 3600 600 86400 300
allow-axfr-ips=
dnsupdate=yes
allow-dnsupdate-from=127.0.0.0/8,::1/128
api=yes
api-key=$PDNS_API_KEY
webserver=yes
webserver-address=127.0.0.1
webserver-port=$PDNS_API_PORT
webserver-allow-from=127.0.0.1/32,::1/128
EOF
    local pdnsutil=(pdnsutil --config-dir="$DIR")
    "${pdnsutil[@]}" import-tsig-key "$TSIG_NAME" "$TSIG_ALGORITHM" "$TSIG_SECRET" >&2 ||
        dns_die "pdnsutil import-tsig-key failed"
    for z in "${ZONES[@]}"; do
        # load-zone takes the same start file as BIND and Knot, so all three
        # backends begin with identical records.
        "${pdnsutil[@]}" load-zone "$z" "$DIR/$z.zone" >&2 || dns_die "pdnsutil load-zone $z failed"
        "${pdnsutil[@]}" set-meta "$z" TSIG-ALLOW-DNSUPDATE "$TSIG_NAME" >&2 || dns_die "pdnsutil set-meta $z TSIG-ALLOW-DNSUPDATE failed"
        "${pdnsutil[@]}" set-meta "$z" TSIG-ALLOW-AXFR "$TSIG_NAME" >&2 || dns_die "pdnsutil set-meta $z TSIG-ALLOW-AXFR failed"
    done
    dns_log "exec pdns_server on 127.0.0.1:$PORT (API 127.0.0.1:$PDNS_API_PORT) for ${ZONES[*]} (dir $DIR)"
    exec pdns_server --config-dir="$DIR"
}

"run_$KIND"
