# shellcheck shell=bash
# Helpers shared by the e2e/dns scripts.

EXTDNS_CACHE="${EXTDNS_CACHE:-$HOME/.cache/extdns}"

dns_log() { printf '[extdns dns] %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
dns_die() { printf '[extdns dns] %s ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

dns_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Installs every missing package in one apt-get call. The machine-wide lock is
# shared with e2e/cluster/up.sh: tests start several servers at once, and
# parallel apt-get calls would otherwise fail on dpkg's lock.
dns_ensure_packages() {
    local missing=() p
    for p in "$@"; do dns_pkg_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || dns_die "missing Debian packages: ${missing[*]} (run as root or install them first)"
    (
        flock 7
        missing=()
        for p in "$@"; do dns_pkg_installed "$p" || missing+=("$p"); done
        [ ${#missing[@]} -eq 0 ] && exit 0
        export DEBIAN_FRONTEND=noninteractive
        dns_log "apt-get update"
        apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null || dns_die "apt-get update failed"
        dns_log "apt-get install ${missing[*]}"
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null ||
            dns_die "apt-get install ${missing[*]} failed"
    ) 7>/var/lock/extdns-apt.lock
}
