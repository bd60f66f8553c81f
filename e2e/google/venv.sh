#!/usr/bin/env bash
# Builds, on first use, the Python venv of the Google Cloud DNS fake and of its SDK check, and
# prints the venv's python on stdout:
#   PY=$(bash e2e/google/venv.sh)
# The venv lives in $EXTDNS_CACHE/google-venv (default ~/.cache/extdns/google-venv) and holds
# Google's official Python client (google-api-python-client, whose discovery cache carries the
# published Cloud DNS v1 description dns.v1.json that the fake loads) and google-auth, with
# `cryptography` for the fake's RS256 checks and its throwaway service-account keys. Every version
# is pinned in requirements.txt (the transitive ones too); a venv whose install was interrupted,
# or whose requirements changed, is rebuilt (the marker is written last).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/../dns/lib.sh"

REQUIREMENTS="$HERE/requirements.txt"
VENV="$EXTDNS_CACHE/google-venv"
DONE_MARKER="$VENV/.extdns-google-$(sha256sum <"$REQUIREMENTS" | cut -c1-16)"

if [ ! -e "$DONE_MARKER" ]; then
    mkdir -p "$EXTDNS_CACHE"
    exec 9>"$EXTDNS_CACHE/google-venv.lock"
    flock 9
    if [ ! -e "$DONE_MARKER" ]; then
        command -v python3 >/dev/null 2>&1 || dns_ensure_packages python3 python3-venv
        # Debian's python3 has no venv/ensurepip until python3-venv is installed.
        python3 -c 'import venv, ensurepip' 2>/dev/null || dns_ensure_packages python3-venv
        dns_log "creating $VENV from $REQUIREMENTS"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2 || dns_die "python3 -m venv $VENV failed"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2 ||
            dns_die "pip install -r $REQUIREMENTS into $VENV failed"
        touch "$DONE_MARKER"
    fi
    exec 9>&-
fi
echo "$VENV/bin/python"
