# shellcheck shell=bash
# Settings of the local Kubernetes control plane (etcd + kube-apiserver +
# kube-controller-manager v1.20.2). Sourced by up.sh/down.sh and by users; every
# value can be overridden from the environment. No `set -e` here: this file is
# also sourced into interactive shells.

export EXTDNS_CACHE="${EXTDNS_CACHE:-$HOME/.cache/extdns}"

# The only Kubernetes version Debian bookworm ships as source (1.20.5+really1.20.2).
export EXTDNS_K8S_VERSION="v1.20.2"
export EXTDNS_K8S_DIR="${EXTDNS_K8S_DIR:-$EXTDNS_CACHE/k8s-$EXTDNS_K8S_VERSION}"
export EXTDNS_K8S_BIN="${EXTDNS_K8S_BIN:-$EXTDNS_K8S_DIR/bin}"

# Runtime state of one cluster: etcd data, certs, tokens, logs, pid files, kubeconfig.
# down.sh deletes this directory, never the binary cache above.
export EXTDNS_CLUSTER_DIR="${EXTDNS_CLUSTER_DIR:-$EXTDNS_CACHE/cluster}"
export EXTDNS_KUBECONFIG="$EXTDNS_CLUSTER_DIR/kubeconfig"

# Ports stay clear of the DNS test servers (5353, 15353-15360, 18081, 15000) and of
# the defaults of a real kube-apiserver (6443) and etcd (2379/2380).
export EXTDNS_ETCD_PORT="${EXTDNS_ETCD_PORT:-23790}"
export EXTDNS_ETCD_PEER_PORT="${EXTDNS_ETCD_PEER_PORT:-23800}"
export EXTDNS_APISERVER_PORT="${EXTDNS_APISERVER_PORT:-16443}"
export EXTDNS_KCM_PORT="${EXTDNS_KCM_PORT:-10257}"

# The image's kubectl is newer than 1.20 and works against it; when a machine has
# none, up.sh builds one from the same Kubernetes source into the cache.
if [ -z "${EXTDNS_KUBECTL:-}" ]; then
    if command -v kubectl >/dev/null 2>&1; then
        EXTDNS_KUBECTL="$(command -v kubectl)"
    else
        EXTDNS_KUBECTL="$EXTDNS_K8S_BIN/kubectl"
    fi
fi
export EXTDNS_KUBECTL
