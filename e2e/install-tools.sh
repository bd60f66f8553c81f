#!/usr/bin/env bash
# Installs the tools the non-DNS tests use, once: lua5.1 (tests/gitops.rs runs the Argo CD
# health checks in it, as Argo CD's gopher-lua is a Lua 5.1), umoci and binutils (make image
# assembles the OCI image with them, image/test.sh unpacks it), CA certificates (copied into
# the image) and jq.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/dns/lib.sh
. "$HERE/dns/lib.sh"
dns_ensure_packages lua5.1 umoci binutils ca-certificates jq tar
dns_log "test tools installed"
