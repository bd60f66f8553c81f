#!/usr/bin/env bash
# Creates (on first use) the Python venv with Microsoft's official Azure SDKs that
# e2e/azure/sdk_check.py drives the fake ARM API with, and prints its python path.
#   e2e/azure/venv.sh            -> /path/to/azure-venv/bin/python
# The venv lives in $EXTDNS_CACHE/azure-venv; versions are pinned, a flock keeps
# parallel tests from building it twice, and a done-marker written last makes an
# interrupted install start over.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/../dns/lib.sh"

AZURE_MGMT_DNS_VERSION=9.0.0
AZURE_MGMT_PRIVATEDNS_VERSION=2.0.0
AZURE_IDENTITY_VERSION=1.27.0
PINS="azure-mgmt-dns==$AZURE_MGMT_DNS_VERSION azure-mgmt-privatedns==$AZURE_MGMT_PRIVATEDNS_VERSION azure-identity==$AZURE_IDENTITY_VERSION"
VENV="$EXTDNS_CACHE/azure-venv"
DONE_MARKER="$VENV/.extdns-azure-$AZURE_MGMT_DNS_VERSION-$AZURE_MGMT_PRIVATEDNS_VERSION-$AZURE_IDENTITY_VERSION"

if [ ! -e "$DONE_MARKER" ]; then
    mkdir -p "$EXTDNS_CACHE"
    exec 9>"$EXTDNS_CACHE/azure-venv.lock"
    flock 9
    if [ ! -e "$DONE_MARKER" ]; then
        command -v python3 >/dev/null 2>&1 || dns_ensure_packages python3 python3-venv
        python3 -c 'import venv, ensurepip' 2>/dev/null || dns_ensure_packages python3-venv
        dns_log "creating $VENV with $PINS"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || dns_die "python3 -m venv $VENV failed"
        # shellcheck disable=SC2086
        "$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2 ||
            dns_die "pip install $PINS into $VENV failed"
        touch "$DONE_MARKER"
    fi
    exec 9>&-
fi
echo "$VENV/bin/python"
