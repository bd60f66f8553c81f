#!/usr/bin/env bash
# Stops the local control plane started by up.sh and deletes its state (etcd data,
# certs, tokens, logs, pid files, kubeconfig). Keeps the binary cache, so the next
# up.sh starts in seconds. Idempotent.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/cluster/env.sh
. "$HERE/env.sh"
# shellcheck source=e2e/cluster/lib.sh
. "$HERE/lib.sh"

cluster_lock
cluster_stop_all

d=$EXTDNS_CLUSTER_DIR
# rm -rf on a path that comes from the environment: refuse anything that is not
# plainly a cluster dir of ours.
case "$d" in
    "" | / | "$HOME" | "$HOME/" | "$EXTDNS_CACHE" | "$EXTDNS_CACHE/" | "$EXTDNS_K8S_DIR"*)
        cluster_die "refusing to delete EXTDNS_CLUSTER_DIR=$d" ;;
esac
if [ -d "$d" ]; then
    if [ -e "$d/run" ] || [ -e "$d/pki" ] || [ -e "$d/etcd" ] || [ -e "$d/logs" ] || [ -z "$(ls -A "$d")" ]; then
        rm -rf "$d"
        cluster_log "removed $d"
    else
        cluster_die "$d does not look like a cluster dir made by up.sh (no run/, pki/, etcd/ or logs/); not deleting it"
    fi
fi
cluster_log "cluster stopped"
