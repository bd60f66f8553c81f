#!/usr/bin/env bash
# Installs every DNS server and client the tests use, once, before tests start them in
# parallel: BIND9, Knot, PowerDNS (+ sqlite backend), dig/nsupdate.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/lib.sh"
dns_ensure_packages bind9 bind9-utils bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 sqlite3 curl jq
dns_log "DNS servers and clients installed"
