#!/usr/bin/env bash
# Restarts only the kube-apiserver of the local control plane started by up.sh,
# e.g. to test that watchers survive an apiserver outage: TERM via its pid file
# (KILL after 10 s), start it again with the very same command line (lib.sh's
# cluster_start_apiserver), then wait up to EXTDNS_READY_DEADLINE_S (60) s until
# /readyz says ok. etcd, kube-controller-manager, certs, tokens and data are kept.
# With kube-controller-manager's watches open, TERM usually runs into the 10 s and
# ends in KILL, so a restart takes ~15 s. Exits non-zero, with the last 40 lines
# of the apiserver log (the controller-manager's if that one died), if it fails.
# Which cluster: the one $KUBECONFIG names when it is a kubeconfig written by up.sh (its dir
# and the ports recorded in its cluster.env), else the one of env.sh's settings.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/cluster/env.sh
. "$HERE/env.sh"
# shellcheck source=e2e/cluster/lib.sh
. "$HERE/lib.sh"
# The cluster the caller's KUBECONFIG names (the e2e suite's), whatever env.sh defaults to.
cluster_from_kubeconfig

READY_DEADLINE_S=${EXTDNS_READY_DEADLINE_S:-60}
LOG=$(cluster_logfile kube-apiserver)
URL="https://127.0.0.1:$EXTDNS_APISERVER_PORT"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# fail MESSAGE [LOGFILE]: the last 40 lines of LOGFILE (the apiserver's log by default), then exit 1.
fail() {
    local log=${2:-$LOG}
    if [ -f "$log" ]; then
        echo "----- last 40 lines of $log -----" >&2
        tail -n 40 "$log" >&2
    fi
    cluster_die "$1"
}

[ -x "$EXTDNS_K8S_BIN/kube-apiserver" ] || cluster_die "no kube-apiserver at $EXTDNS_K8S_BIN; start the cluster with: bash $HERE/up.sh"
[ -d "$EXTDNS_CLUSTER_DIR/run" ] && [ -s "$EXTDNS_CLUSTER_DIR/pki/tokens.csv" ] ||
    cluster_die "no cluster in $EXTDNS_CLUSTER_DIR; start it with: bash $HERE/up.sh"

# Keeps up.sh from seeing the apiserver down mid-restart and restarting the whole cluster.
cluster_lock
cluster_live_pid etcd >/dev/null || cluster_die "etcd is not running; start the cluster with: bash $HERE/up.sh"
cluster_set_clients
# kube-controller-manager 1.20 exits when the apiserver vanishes while it is still
# starting up (building its controller context), so check it survived.
kcm=$(cluster_live_pid kube-controller-manager) || kcm=

t0=$(now_ms)
if old=$(cluster_live_pid kube-apiserver); then
    cluster_log "restarting kube-apiserver (pid $old) at $URL"
    cluster_stop_component kube-apiserver || fail "kube-apiserver (pid $old) is still running after TERM and KILL"
    cluster_log "kube-apiserver (pid $old) exited after $(($(now_ms) - t0)) ms"
else
    cluster_log "kube-apiserver is not running (no live pid in $(cluster_pidfile kube-apiserver)); starting it"
fi
if cluster_port_in_use "$EXTDNS_APISERVER_PORT"; then
    fail "127.0.0.1:$EXTDNS_APISERVER_PORT is in use by another process (see: ss -ltnp 'sport = :$EXTDNS_APISERVER_PORT'); not starting kube-apiserver"
fi

t1=$(now_ms)
cluster_start_apiserver || fail "kube-apiserver exited right after start"
new=$(cluster_live_pid kube-apiserver) || fail "kube-apiserver died right after start"

cluster_log "waiting up to $READY_DEADLINE_S s for $URL/readyz"
deadline=$((t1 + READY_DEADLINE_S * 1000))
until cluster_apiserver_ready; do
    cluster_live_pid kube-apiserver >/dev/null || fail "kube-apiserver (pid $new) died while waiting for $URL/readyz"
    [ "$(now_ms)" -lt "$deadline" ] || fail "kube-apiserver (pid $new) $URL/readyz not ok after $READY_DEADLINE_S s"
    sleep 0.2
done
cluster_log "kube-apiserver (pid $new) ready $(($(now_ms) - t1)) ms after start ($(($(now_ms) - t0)) ms in all)"
if [ -n "$kcm" ] && ! cluster_live_pid kube-controller-manager >/dev/null; then
    fail "kube-controller-manager (pid $kcm) exited while the apiserver was down; restart the whole cluster with: bash $HERE/up.sh" \
        "$(cluster_logfile kube-controller-manager)"
fi
