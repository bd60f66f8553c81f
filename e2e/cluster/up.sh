#!/usr/bin/env bash
# Starts a real local Kubernetes control plane: etcd, kube-apiserver and
# kube-controller-manager v1.20.2, all on 127.0.0.1, no kubelet and no pods.
# The binaries are built once from Debian bookworm's `kubernetes` source package
# (no registry ships prebuilt ones here) and cached; see
# shared/notes/local-control-plane.md for why each step is there.
# Idempotent: a second run with a healthy cluster only prints how to use it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/cluster/env.sh
. "$HERE/env.sh"
# shellcheck source=e2e/cluster/lib.sh
. "$HERE/lib.sh"

export DEBIAN_FRONTEND=noninteractive

KUBE_GIT_COMMIT_V1_20_2=faecb196815e248d3ecfb03c680a4507229c2a56
READY_DEADLINE_S=${EXTDNS_READY_DEADLINE_S:-60}

# ---------------------------------------------------------------------------
# Debian packages

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
apt_update() {
    cluster_log "apt-get update"
    apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null ||
        cluster_die "apt-get update failed"
    APT_UPDATED=1
}

# One machine-wide lock, shared with e2e/dns/*.sh: parallel callers would
# otherwise fail on dpkg's own lock instead of waiting for it.
ensure_packages() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || cluster_die "missing Debian packages: ${missing[*]} (run as root or install them first)"
    exec 7>/var/lock/extdns-apt.lock
    flock 7
    missing=()
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$APT_UPDATED" = 1 ] || apt_update
        cluster_log "apt-get install ${missing[*]}"
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null ||
            cluster_die "apt-get install ${missing[*]} failed"
    fi
    exec 7>&-
}

# ---------------------------------------------------------------------------
# deb-src entry: `apt-get source` needs one, and images ship without it.

has_bookworm_deb_src() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        grep -Eq '^[[:space:]]*deb-src[[:space:]].*[[:space:]]bookworm([[:space:]]|$)' "$f" && return 0
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        deb822_stanza deb-src "$f" >/dev/null && return 0
    done
    return 1
}

# Prints "URIs<TAB>Signed-By" of the first enabled stanza of TYPE in FILE whose
# Suites include bookworm; Signed-By may be a path or an inline key block whose
# continuation lines are kept (joined with \n) so it can be written back as is.
deb822_stanza() {
    awk -v want="$1" '
        function flush() {
            if (types ~ ("(^| )" want "( |$)") && suites ~ /(^| )bookworm( |$)/ && enabled != "no" && uris != "") {
                printf "%s\t%s\n", uris, signed; found = 1; exit
            }
            types = suites = uris = signed = enabled = key = ""
        }
        /^[[:space:]]*$/ { flush(); next }
        /^#/ { next }
        /^[[:space:]]/ { if (key == "signed-by") signed = signed "\\n" $0; next }
        {
            key = tolower($0); sub(/:.*/, "", key)
            val = $0; sub(/^[^:]*:[[:space:]]*/, "", val); sub(/[[:space:]]+$/, "", val)
            if (key == "types") types = val
            else if (key == "suites") suites = val
            else if (key == "uris") uris = val
            else if (key == "signed-by") signed = val
            else if (key == "enabled") enabled = tolower(val)
        }
        END { if (!found) flush(); exit !found }
    ' "$2"
}

ensure_deb_src() {
    has_bookworm_deb_src && return 0
    local f line="" uris signed
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        line=$(deb822_stanza deb "$f") && break
        line=""
    done
    [ -n "$line" ] || cluster_die "no deb822 'Types: deb' entry for bookworm in /etc/apt/sources.list.d/*.sources to copy a deb-src entry from; add a deb-src line for bookworm main yourself"
    uris=${line%%$'\t'*}
    signed=${line#*$'\t'}
    [ "$(id -u)" -eq 0 ] || cluster_die "need root to add /etc/apt/sources.list.d/extdns-src.sources"
    cluster_log "adding deb-src for bookworm main ($uris) as /etc/apt/sources.list.d/extdns-src.sources"
    {
        echo "# Added by extdns e2e/cluster/up.sh: apt-get source kubernetes needs a deb-src entry."
        echo "Types: deb-src"
        echo "URIs: $uris"
        echo "Suites: bookworm"
        echo "Components: main"
        [ -z "$signed" ] || printf 'Signed-By: %b\n' "$signed"
    } >/etc/apt/sources.list.d/extdns-src.sources
    APT_UPDATED=0
}

# ---------------------------------------------------------------------------
# Build

binaries_cached() {
    [ -x "$EXTDNS_K8S_BIN/kube-apiserver" ] && [ -x "$EXTDNS_K8S_BIN/kube-controller-manager" ] || return 1
    command -v kubectl >/dev/null 2>&1 || [ -x "$EXTDNS_K8S_BIN/kubectl" ]
}

build_binaries() {
    local what="cmd/kube-apiserver cmd/kube-controller-manager" bins="kube-apiserver kube-controller-manager"
    if ! command -v kubectl >/dev/null 2>&1; then
        what="$what cmd/kubectl"
        bins="$bins kubectl"
    fi
    local started=$SECONDS
    cluster_log "building $bins $EXTDNS_K8S_VERSION from Debian's kubernetes source into $EXTDNS_K8S_BIN (cold build: ~7 min on 2 cores)"

    ensure_deb_src
    ensure_packages golang-go rsync jq golang-github-modern-go-reflect2-dev make
    [ "$APT_UPDATED" = 1 ] || apt_update

    local dl="$EXTDNS_K8S_DIR/download" src="$EXTDNS_K8S_DIR/src" tarball
    mkdir -p "$dl"
    tarball=$(find "$dl" -maxdepth 1 -name 'kubernetes_*really1.20.2.orig.tar.gz' | head -n1)
    if [ -z "$tarball" ]; then
        cluster_log "apt-get source --download-only kubernetes (34 MB)"
        # apt warns that it downloads unsandboxed as root into a root-owned dir; harmless.
        (cd "$dl" && apt-get source -q --download-only kubernetes) >"$EXTDNS_K8S_DIR/download.log" 2>&1 || {
            tail -n 20 "$EXTDNS_K8S_DIR/download.log" >&2
            cluster_die "apt-get source --download-only kubernetes failed (log: $EXTDNS_K8S_DIR/download.log)"
        }
        tarball=$(find "$dl" -maxdepth 1 -name 'kubernetes_*really1.20.2.orig.tar.gz' | head -n1)
        [ -n "$tarball" ] || cluster_die "apt-get source gave no kubernetes_*really1.20.2.orig.tar.gz in $dl (did bookworm's kubernetes change?)"
    fi

    cluster_log "unpacking $(basename "$tarball")"
    rm -rf "$src"
    mkdir -p "$src"
    tar -xzf "$tarball" -C "$src" --strip-components=1 || cluster_die "could not unpack $tarball"
    [ -f "$src/Makefile" ] && [ -d "$src/vendor" ] || cluster_die "$tarball has no Makefile/vendor at its top level"

    # reflect2 1.0.1 (vendored) is broken on Go >= 1.18: the apiserver segfaults in
    # UnsafeMapType on the first custom resource write. Debian's 1.0.2 is fixed.
    local r2src=/usr/share/gocode/src/github.com/modern-go/reflect2 r2dst="$src/vendor/github.com/modern-go/reflect2"
    [ -f "$r2src/reflect2.go" ] || cluster_die "$r2src/reflect2.go missing (golang-github-modern-go-reflect2-dev)"
    cluster_log "replacing vendored reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
    rm -rf "$r2dst"
    mkdir -p "$r2dst"
    find "$r2src" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) ! -name '*_test.go' -exec cp {} "$r2dst/" \;
    [ -f "$r2dst/go_above_118.go" ] || cluster_die "Debian's reflect2 lacks go_above_118.go: it is not the >= 1.0.2 fix the build needs"

    # Kubernetes 1.20 builds in GOPATH mode and must find itself as k8s.io/kubernetes.
    mkdir -p "$src/.go/src/k8s.io"
    ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
    # Without git metadata the binaries would call themselves v0.0.0-master.
    cat >"$src/.version" <<EOF
KUBE_GIT_COMMIT='$KUBE_GIT_COMMIT_V1_20_2'
KUBE_GIT_TREE_STATE='dirty'
KUBE_GIT_VERSION='$EXTDNS_K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOF

    local buildlog="$EXTDNS_K8S_DIR/build.log"
    cluster_log "make WHAT=\"$what\" (log: $buildlog)"
    (
        cd "$src"
        exec env GOPATH="$src/.go" GOCACHE="$src/.gocache" GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
            KUBE_GIT_VERSION_FILE="$src/.version" make WHAT="$what"
    ) >"$buildlog" 2>&1 &
    local make_pid=$! rc=0 last
    # A cold build is silent for minutes; a heartbeat shows it is alive.
    while kill -0 "$make_pid" 2>/dev/null; do
        for _ in $(seq 30); do
            kill -0 "$make_pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$make_pid" 2>/dev/null; then
            last=$(tail -n1 "$buildlog" 2>/dev/null | cut -c1-100)
            cluster_log "still building ($((SECONDS - started)) s): ${last:-...}"
        fi
    done
    wait "$make_pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$buildlog" >&2
        cluster_die "make WHAT=\"$what\" failed with exit code $rc (full log: $buildlog; sources kept in $src)"
    fi

    mkdir -p "$EXTDNS_K8S_BIN"
    local b
    for b in $bins; do
        [ -x "$src/_output/bin/$b" ] || cluster_die "make succeeded but $src/_output/bin/$b is missing"
        # Copy then rename, so a concurrent reader never sees half a binary.
        cp -L "$src/_output/bin/$b" "$EXTDNS_K8S_BIN/.$b.tmp"
        mv -f "$EXTDNS_K8S_BIN/.$b.tmp" "$EXTDNS_K8S_BIN/$b"
    done
    # The tree plus Go's build cache is several GB; the tarball stays for rebuilds.
    rm -rf "$src"
    cluster_log "built $bins in $((SECONDS - started)) s: $("$EXTDNS_K8S_BIN/kube-apiserver" --version)"
}

ensure_binaries() {
    binaries_cached && return 0
    mkdir -p "$EXTDNS_K8S_DIR"
    exec 9>"$EXTDNS_K8S_DIR/build.lock"
    if ! flock -n 9; then
        cluster_log "another up.sh is building the binaries; waiting for it"
        flock 9
    fi
    binaries_cached || build_binaries
    exec 9>&-
}

# ---------------------------------------------------------------------------
# Cluster

cluster_healthy() {
    local c
    for c in "${CLUSTER_COMPONENTS[@]}"; do cluster_live_pid "$c" >/dev/null || return 1; done
    [ -s "$EXTDNS_KUBECONFIG" ] && [ -s "$EXTDNS_CLUSTER_DIR/pki/tokens.csv" ] || return 1
    cluster_set_clients
    cluster_apiserver_ready
}

print_usage() {
    cat <<EOF
[extdns cluster] Kubernetes $EXTDNS_K8S_VERSION is running at https://127.0.0.1:$EXTDNS_APISERVER_PORT
  export KUBECONFIG=$EXTDNS_KUBECONFIG
  kubectl: $EXTDNS_KUBECTL
  logs:    $EXTDNS_CLUSTER_DIR/logs/
  stop:    bash $HERE/down.sh   (keeps the binary cache in $EXTDNS_K8S_BIN)
EOF
}

# Generated once per cluster dir, so a restart (e.g. after a reboot) keeps the
# kubeconfig valid; down.sh removes them with the dir.
ensure_pki() {
    local pki="$EXTDNS_CLUSTER_DIR/pki"
    [ -s "$pki/ca.crt" ] && [ -s "$pki/apiserver.crt" ] && [ -s "$pki/sa.key" ] && [ -s "$pki/tokens.csv" ] && return 0
    cluster_log "generating certificates, service-account keys and admin token in $pki"
    rm -rf "$pki"
    mkdir -p "$pki"
    chmod 700 "$pki"
    # A CA plus a leaf, not one self-signed leaf: rustls (kube-rs' default TLS)
    # rejects a serving cert that is itself a CA (CaUsedAsEndEntity).
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=extdns-local-ca" \
        -keyout "$pki/ca.key" -out "$pki/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null ||
        cluster_die "openssl could not create the CA"
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null ||
        cluster_die "openssl could not create the apiserver key"
    cat >"$pki/apiserver.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null ||
        cluster_die "openssl could not sign the apiserver certificate"
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null || cluster_die "openssl could not create the service-account key"
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null || cluster_die "openssl could not derive sa.pub"
    printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 32)" >"$pki/tokens.csv"
    rm -f "$EXTDNS_KUBECONFIG" "$EXTDNS_CLUSTER_DIR/kcm.kubeconfig"
}

write_kubeconfig() {
    local file=$1 user=$2 token ca
    token=$(cut -d, -f1 "$EXTDNS_CLUSTER_DIR/pki/tokens.csv")
    ca=$(base64 -w0 <"$EXTDNS_CLUSTER_DIR/pki/ca.crt")
    (umask 077 && cat >"$file.tmp") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: extdns-local
  cluster:
    server: https://127.0.0.1:$EXTDNS_APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: extdns-local
  context:
    cluster: extdns-local
    user: $user
current-context: extdns-local
EOF
    mv -f "$file.tmp" "$file"
}

start_component() {
    cluster_start_component "$@" || fail_start "$1 exited right after start"
}

fail_start() {
    local c
    for c in "${CLUSTER_COMPONENTS[@]}"; do
        [ -f "$(cluster_logfile "$c")" ] || continue
        echo "----- last 40 lines of $(cluster_logfile "$c") -----" >&2
        tail -n 40 "$(cluster_logfile "$c")" >&2
    done
    # Half a cluster would only hold the ports; the data dir stays for inspection.
    cluster_stop_all >&2 || true
    cluster_die "$1"
}

# Waits for CHECK (a command) with the shared deadline, failing early when one of
# our components has died.
wait_for() {
    local what=$1
    shift
    local c
    while ! "$@" >/dev/null 2>&1; do
        for c in "${STARTED[@]}"; do
            cluster_live_pid "$c" >/dev/null || fail_start "$c died while waiting for $what"
        done
        [ "$SECONDS" -lt "$DEADLINE" ] || fail_start "$what not ready after ${READY_DEADLINE_S} s"
        sleep 0.2
    done
}

etcd_healthy() {
    curl -fsS --max-time 2 "http://127.0.0.1:$EXTDNS_ETCD_PORT/health" | grep -q '"health":"true"'
}
kcm_healthy() {
    [ "$(curl -ksS --max-time 2 "https://127.0.0.1:$EXTDNS_KCM_PORT/healthz")" = ok ]
}
# Created by the serviceaccount controller, so kube-controller-manager is past
# building its controller context: until then it exits if the apiserver goes
# away (e.g. restart-apiserver.sh right after up.sh).
default_sa_exists() { "${KUBECTL[@]}" -n default get serviceaccount default; }

start_cluster() {
    local d=$EXTDNS_CLUSTER_DIR
    # Half-alive leftovers (e.g. apiserver crashed, etcd still up) are restarted as a whole.
    cluster_stop_all || cluster_die "could not stop the leftover components"
    cluster_check_ports_free
    mkdir -p "$d/logs" "$d/run" "$d/etcd"
    cluster_write_env
    ensure_pki
    cluster_set_clients
    # Rewritten on every start (same CA and token, so still valid for their holders): a
    # restart with other ports must not leave them pointing at the old apiserver port.
    write_kubeconfig "$EXTDNS_KUBECONFIG" admin
    write_kubeconfig "$d/kcm.kubeconfig" kube-controller-manager

    DEADLINE=$((SECONDS + READY_DEADLINE_S))
    STARTED=()

    start_component etcd "$(command -v etcd)" \
        --name extdns --data-dir "$d/etcd" \
        --listen-client-urls "http://127.0.0.1:$EXTDNS_ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$EXTDNS_ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$EXTDNS_ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$EXTDNS_ETCD_PEER_PORT" \
        --initial-cluster "extdns=http://127.0.0.1:$EXTDNS_ETCD_PEER_PORT" \
        --initial-cluster-state new --logger zap --log-outputs stderr
    STARTED+=(etcd)
    wait_for "etcd on 127.0.0.1:$EXTDNS_ETCD_PORT" etcd_healthy

    cluster_start_apiserver || fail_start "kube-apiserver exited right after start"
    STARTED+=(kube-apiserver)
    wait_for "kube-apiserver /readyz on https://127.0.0.1:$EXTDNS_APISERVER_PORT" cluster_apiserver_ready

    # garbagecollector: ownerReference cascades; namespace: namespace deletion;
    # serviceaccount: the `default` ServiceAccount every real namespace has.
    start_component kube-controller-manager "$EXTDNS_K8S_BIN/kube-controller-manager" \
        --kubeconfig "$d/kcm.kubeconfig" \
        --controllers garbagecollector,namespace,serviceaccount \
        --leader-elect=false \
        --bind-address 127.0.0.1 --secure-port "$EXTDNS_KCM_PORT" --port 0 \
        --cert-dir "$d/pki/kcm"
    STARTED+=(kube-controller-manager)
    wait_for "kube-controller-manager /healthz on https://127.0.0.1:$EXTDNS_KCM_PORT" kcm_healthy

    wait_for "serviceaccount default/default via kubectl" default_sa_exists
}

main() {
    if [ "${1:-}" = --status ]; then
        # Exit status only: 0 when this cluster dir's control plane is up and ready.
        cluster_healthy >/dev/null 2>&1
        return
    fi
    ensure_binaries
    ensure_packages etcd-server openssl curl
    [ -x "$EXTDNS_KUBECTL" ] || cluster_die "no kubectl at $EXTDNS_KUBECTL"

    cluster_lock
    cluster_any_live && cluster_check_env_matches
    if cluster_healthy; then
        cluster_log "cluster already running and ready"
        print_usage
        return 0
    fi
    local started=$SECONDS
    start_cluster
    cluster_log "cluster ready in $((SECONDS - started)) s"
    print_usage
}

main "$@"
