# shellcheck shell=bash
# Helpers shared by up.sh and down.sh. Expects env.sh to be sourced first.

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

# TERM, up to 10 s of grace, then KILL; only PIDs from our own pid files.
cluster_stop_component() {
    local name=$1 pid i
    if pid=$(cluster_live_pid "$name"); then
        cluster_log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            cluster_log "$name (pid $pid) still alive after 10 s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$(cluster_pidfile "$name")"
}

cluster_stop_all() {
    local i
    for ((i = ${#CLUSTER_COMPONENTS[@]} - 1; i >= 0; i--)); do
        cluster_stop_component "${CLUSTER_COMPONENTS[$i]}"
    done
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
