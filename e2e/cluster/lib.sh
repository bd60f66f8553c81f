# shellcheck shell=bash
# Helpers shared by up.sh, down.sh and restart-apiserver.sh. Expects env.sh to be
# sourced first.

cluster_log() { printf '[extdns cluster] %s %s\n' "$(date +%H:%M:%S)" "$*"; }
cluster_die() { printf '[extdns cluster] %s ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The components in start order; down.sh stops them in reverse.
CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager)

cluster_pidfile() { printf '%s/run/%s.pid' "$EXTDNS_CLUSTER_DIR" "$1"; }
cluster_logfile() { printf '%s/logs/%s.log' "$EXTDNS_CLUSTER_DIR" "$1"; }

# Prints the PID recorded for a component if that process is alive *and* is still
# that component's binary: a stale pid file after a reboot may name a reused PID,
# which must never be reported as ours, let alone killed.
cluster_live_pid() {
    local name=$1 pidfile pid exe
    pidfile=$(cluster_pidfile "$name")
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [ "$(basename "${exe% (deleted)}")" = "$name" ] || return 1
    printf '%s\n' "$pid"
}

# True until PID has fully exited. Exited servers are reparented to PID 1, and
# a container's PID 1 may never reap them (this image's does not): `kill -0`
# alone would call a zombie alive and make every stop wait 15 s. But a zombie
# thread-group leader whose other threads are still exiting (Go servers after
# KILL) still holds the process' files, e.g. its listening socket.
cluster_pid_running() {
    local pid=$1 stat tasks
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" = Z ] || return 0
    tasks=("/proc/$pid/task/"*)
    [ "${#tasks[@]}" -gt 1 ]
}

# TERM, up to 10 s of grace, then KILL; only PIDs from our own pid files.
# Fails if the process is still running after the KILL (pid file kept then).
cluster_stop_component() {
    local name=$1 pid i
    if pid=$(cluster_live_pid "$name"); then
        cluster_log "stopping $name (pid $pid): TERM"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            cluster_pid_running "$pid" || break
            sleep 0.1
        done
        if cluster_pid_running "$pid"; then
            cluster_log "$name (pid $pid) still running after 10 s: KILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                cluster_pid_running "$pid" || break
                sleep 0.1
            done
            if cluster_pid_running "$pid"; then
                cluster_log "$name (pid $pid) survived KILL"
                return 1
            fi
        fi
        cluster_log "stopped $name (pid $pid)"
    fi
    rm -f "$(cluster_pidfile "$name")"
}

cluster_stop_all() {
    local i rc=0
    for ((i = ${#CLUSTER_COMPONENTS[@]} - 1; i >= 0; i--)); do
        cluster_stop_component "${CLUSTER_COMPONENTS[$i]}" || rc=1
    done
    return "$rc"
}

# Serialises up.sh and down.sh on one cluster dir. The lock file sits beside the
# dir because down.sh deletes the dir itself.
cluster_lock() {
    mkdir -p "$(dirname "$EXTDNS_CLUSTER_DIR")"
    exec 8>"$EXTDNS_CLUSTER_DIR.lock"
    if ! flock -n 8; then
        cluster_log "waiting for another up.sh/down.sh on $EXTDNS_CLUSTER_DIR"
        flock 8
    fi
}

cluster_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    # A port bound but not (yet) listening, or held by a process we cannot connect to.
    command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
}

# Who holds 127.0.0.1:PORT, for error messages ("" when ss cannot tell).
cluster_port_holder() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n1
}

# The ports of this cluster, each with the variable that sets it.
cluster_ports() {
    printf '%s %s\n' \
        EXTDNS_ETCD_PORT "$EXTDNS_ETCD_PORT" \
        EXTDNS_ETCD_PEER_PORT "$EXTDNS_ETCD_PEER_PORT" \
        EXTDNS_APISERVER_PORT "$EXTDNS_APISERVER_PORT" \
        EXTDNS_KCM_PORT "$EXTDNS_KCM_PORT"
}

# Fails naming the first port of this cluster that something else holds. Called once this
# cluster's own leftovers are stopped, so any holder is another process (another cluster
# dir's control plane, a demo, anything).
cluster_check_ports_free() {
    local var port holder
    while read -r var port; do
        if cluster_port_in_use "$port"; then
            holder=$(cluster_port_holder "$port")
            cluster_die "port 127.0.0.1:$port ($var) is already in use${holder:+ by $holder}, not by the cluster in $EXTDNS_CLUSTER_DIR; stop that process or start this cluster on other ports ($var=...)"
        fi
    done < <(cluster_ports)
}

# Records the settings of a running cluster in its dir, so scripts handed only its
# kubeconfig (restart-apiserver.sh, with KUBECONFIG) act on this cluster and no other.
cluster_write_env() {
    local f="$EXTDNS_CLUSTER_DIR/cluster.env"
    {
        echo "# Written by up.sh: the settings this cluster runs with."
        cluster_ports | while read -r var port; do printf '%s=%s\n' "$var" "$port"; done
    } >"$f.tmp" && mv -f "$f.tmp" "$f"
}

# True when any component of this cluster dir is running.
cluster_any_live() {
    local c
    for c in "${CLUSTER_COMPONENTS[@]}"; do cluster_live_pid "$c" >/dev/null && return 0; done
    return 1
}

# A running cluster asked for with other ports than it runs on would be used on the wrong
# ports (or its ports taken twice): refuse.
cluster_check_env_matches() {
    local f="$EXTDNS_CLUSTER_DIR/cluster.env" var port recorded
    [ -f "$f" ] || return 0
    while read -r var port; do
        recorded=$(sed -n "s/^$var=//p" "$f")
        [ -z "$recorded" ] || [ "$recorded" = "$port" ] ||
            cluster_die "the cluster in $EXTDNS_CLUSTER_DIR runs with $var=$recorded, not $port; use the same settings or stop it first (down.sh with its settings)"
    done < <(cluster_ports)
}

# When KUBECONFIG names the kubeconfig of a cluster dir made by up.sh, use that cluster:
# its dir and the ports it was started with (cluster.env). For scripts that act on "the
# cluster the caller uses", e.g. restart-apiserver.sh run by the e2e suite.
cluster_from_kubeconfig() {
    local kc=${KUBECONFIG:-} dir var port
    [ -n "$kc" ] && [ "${kc#*:}" = "$kc" ] && [ -f "$kc" ] || return 0
    dir=$(cd "$(dirname "$kc")" && pwd)
    [ "$(basename "$kc")" = kubeconfig ] && [ -f "$dir/cluster.env" ] || return 0
    if [ "$dir" != "$(cd "$(dirname "$EXTDNS_KUBECONFIG")" 2>/dev/null && pwd)" ]; then
        cluster_log "KUBECONFIG names the cluster in $dir: using it (not $EXTDNS_CLUSTER_DIR)"
    fi
    export EXTDNS_CLUSTER_DIR="$dir"
    export EXTDNS_KUBECONFIG="$dir/kubeconfig"
    while IFS='=' read -r var port; do
        case $var in
            EXTDNS_ETCD_PORT | EXTDNS_ETCD_PEER_PORT | EXTDNS_APISERVER_PORT | EXTDNS_KCM_PORT)
                case $port in '' | *[!0-9]*) cluster_die "$dir/cluster.env: bad $var=$port" ;; esac
                export "$var=$port" ;;
        esac
    done < "$dir/cluster.env"
}

# Admin clients of the running cluster (needs pki/tokens.csv).
KUBECTL=()
CURL_API=()
cluster_set_clients() {
    KUBECTL=("$EXTDNS_KUBECTL" --kubeconfig "$EXTDNS_KUBECONFIG")
    local token
    token=$(cut -d, -f1 "$EXTDNS_CLUSTER_DIR/pki/tokens.csv")
    CURL_API=(curl -fsS --max-time 2 --cacert "$EXTDNS_CLUSTER_DIR/pki/ca.crt" -H "Authorization: Bearer $token")
}

cluster_apiserver_ready() {
    [ "$("${CURL_API[@]}" "https://127.0.0.1:$EXTDNS_APISERVER_PORT/readyz" 2>/dev/null)" = ok ]
}

# Starts NAME as `BIN ARGS...` in the background, logging to its log file, and
# records its PID in its pid file. Returns 1 if it exited right away.
# setsid detaches the server from the caller's process group (make or a CI step
# may kill that group on exit); it execs in place, so $! is the server's PID,
# which cluster_live_pid double-checks against the binary name.
cluster_start_component() {
    local name=$1 bin=$2
    shift 2
    local log pid
    log=$(cluster_logfile "$name")
    echo "---- $(date -Is) starting $bin $*" >>"$log" || return 1
    # No fd of the caller may leak into the servers, which outlive it: a lock (ours, or one
    # a caller took with flock(1) around this script) would be held forever, a test
    # runner's pipe never closed.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "$bin" "$@" </dev/null >>"$log" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$(cluster_pidfile "$name")" || return 1
    sleep 0.1
    if ! cluster_live_pid "$name" >/dev/null; then
        cluster_log "$name (pid $pid) exited right after start"
        return 1
    fi
    cluster_log "started $name (pid $pid, log $log)"
}

# The one kube-apiserver command line, used by up.sh and restart-apiserver.sh.
# Only starts it; the caller waits for cluster_apiserver_ready.
# ServiceAccount admission is off: no token controller runs, and with it on,
# every Pod a test creates would be rejected for lack of an SA token.
cluster_start_apiserver() {
    local d=$EXTDNS_CLUSTER_DIR
    cluster_start_component kube-apiserver "$EXTDNS_K8S_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$EXTDNS_ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
        --secure-port "$EXTDNS_APISERVER_PORT" --insecure-port 0 \
        --cert-dir "$d/pki" \
        --tls-cert-file "$d/pki/apiserver.crt" --tls-private-key-file "$d/pki/apiserver.key" \
        --token-auth-file "$d/pki/tokens.csv" \
        --authorization-mode RBAC \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$d/pki/sa.pub" \
        --service-account-signing-key-file "$d/pki/sa.key" \
        --service-cluster-ip-range 10.96.0.0/12 \
        --disable-admission-plugins ServiceAccount
}
