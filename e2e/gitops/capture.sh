#!/usr/bin/env bash
# Captures the status objects under config/argocd/resource_customizations/extdns.io/*/testdata
# from a real run of the operator: Ready, Unreachable (RFC2136 server on a closed port),
# Conflict, InvalidRecord (Stalled), Deleting, and a generation the operator has not seen yet.
#
#   KUBECONFIG=<a cluster with `make install-crds` done> bash e2e/gitops/capture.sh [OUTDIR]
#
# OUTDIR defaults to config/argocd/resource_customizations/extdns.io; files go to
# OUTDIR/<Kind>/testdata/<case>.yaml. Needs: a built target/debug/extdns, kubectl, jq,
# python3 with PyYAML (JSON to YAML), and four free ports on 127.0.0.1
# (CAPTURE_PORT_BASE, default 45000: +1 metrics, +10 and +11 embedded DNS; +12 is the
# RFC2136 port that must stay closed). It runs the operator itself, without leader
# election, and removes its namespace at the end. Each file is `kubectl get -o yaml` with
# managedFields, resourceVersion, uid and kubectl's last-applied-configuration dropped (they vary
# per run and say nothing about health).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/config/argocd/resource_customizations/extdns.io}
BASE=${CAPTURE_PORT_BASE:-45000}
NS=gitops-capture
BIN=${EXTDNS_BIN:-$ROOT/target/debug/extdns}
mkdir -p "$ROOT/target/e2e"
LOG="$ROOT/target/e2e/gitops-capture.operator.log"

k() { kubectl "$@"; }
wait_reason() { # kind name condition-type status [reason]
    local i got
    for i in $(seq 1 300); do
        got=$(k ${NS:+-n "$NS"} get "$1" "$2" -o json 2>/dev/null |
            jq -r --arg t "$3" '.status.conditions // [] | map(select(.type==$t)) | .[0] | "\(.status) \(.reason)"')
        if [ "$got" = "$4 ${5:-$(cut -d' ' -f2 <<<"$got")}" ]; then return 0; fi
        sleep 0.2
    done
    echo "timed out waiting for $1/$2 $3=$4 ${5:-}: got $got" >&2
    tail -20 "$LOG" >&2
    exit 1
}
capture() { # kind name file "how it was made" [cluster]
    local ns=(-n "$NS") file
    [ "${5:-}" = cluster ] && ns=()
    case $3 in
    clusterdnsprovider-*) file=$OUT/ClusterDNSProvider/testdata/${3#clusterdnsprovider-}.yaml ;;
    dnsprovider-*) file=$OUT/DNSProvider/testdata/${3#dnsprovider-}.yaml ;;
    dnsendpoint-*) file=$OUT/DNSEndpoint/testdata/${3#dnsendpoint-}.yaml ;;
    esac
    mkdir -p "$(dirname "$file")"
    {
        echo "# Captured from a real run of the operator by e2e/gitops/capture.sh: $4."
        echo "# kubectl get -o yaml; managedFields, resourceVersion, uid and last-applied-configuration dropped."
        k "${ns[@]}" get "$1" "$2" -o json |
            jq 'del(.metadata.managedFields, .metadata.resourceVersion, .metadata.uid, .metadata.selfLink, .metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]) | if .metadata.annotations == {} then del(.metadata.annotations) else . end' |
            python3 -c 'import sys, json, yaml; print(yaml.safe_dump(json.load(sys.stdin), sort_keys=False), end="")'
    } >"$file"
    echo "captured $1/$2 -> $file"
}

k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k create namespace extdns --dry-run=client -o yaml | k apply -f - >/dev/null
"$BIN" run --leader-elect=false --metrics-addr "127.0.0.1:$((BASE + 1))" --coalesce-window 50ms \
    --namespaced-embedded --namespaced-custom-endpoint 2>"$LOG" &
OP=$!
cleanup() {
    kill "$OP" 2>/dev/null || true
    wait "$OP" 2>/dev/null || true
}
# The operator is stopped by then: finalizers are dropped by hand (nothing real to clean up
# in an embedded zone or an unreachable server).
teardown() {
    cleanup
    local r
    for r in $(k -n "$NS" get dnsendpoints,dnsproviders -o name 2>/dev/null) \
        clusterdnsprovider/gitops-capture clusterdnsprovider/gitops-capture-taken; do
        case $r in
        clusterdnsprovider*) k patch "$r" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true ;;
        *) k -n "$NS" patch "$r" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true ;;
        esac
    done
    k delete clusterdnsprovider gitops-capture gitops-capture-taken --ignore-not-found --wait=false >/dev/null
    k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap teardown EXIT

k -n "$NS" apply -f - <<YAML
apiVersion: extdns.io/v1alpha1
kind: DNSProvider
metadata: {name: embedded}
spec:
  embedded: {zones: [example.com], listen: "127.0.0.1:$((BASE + 10))"}
  domains: {include: [example.com]}
  policy: sync
  registry: {txt: {ownerId: capture}}
  defaultTTL: 30
---
apiVersion: v1
kind: Secret
metadata: {name: tsig}
stringData: {secret: e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=}
---
apiVersion: extdns.io/v1alpha1
kind: DNSProvider
metadata: {name: unreachable}
spec:
  rfc2136:
    host: 127.0.0.1
    port: $((BASE + 12))
    zones: [example.org]
    tsig: {keyName: externaldns-key, algorithm: hmac-sha256, secretRef: {name: tsig, key: secret}}
    transport: tcp
    timeout: 1s
  domains: {include: [example.org]}
  policy: sync
  registry: {txt: {ownerId: capture}}
YAML
wait_reason dnsprovider embedded Ready True
k apply -f - <<YAML
apiVersion: extdns.io/v1alpha1
kind: ClusterDNSProvider
metadata: {name: gitops-capture}
spec:
  embedded: {zones: [example.net], listen: "127.0.0.1:$((BASE + 11))"}
  domains: {include: [example.net]}
  policy: sync
  registry: {txt: {ownerId: capture}}
---
apiVersion: extdns.io/v1alpha1
kind: ClusterDNSProvider
metadata: {name: gitops-capture-taken}
spec:
  embedded: {zones: [example.info], listen: "127.0.0.1:$((BASE + 11))"}
  domains: {include: [example.info]}
  policy: sync
  registry: {txt: {ownerId: capture}}
YAML
NS= wait_reason clusterdnsprovider gitops-capture Ready True
capture clusterdnsprovider gitops-capture clusterdnsprovider-ready "an embedded ClusterDNSProvider serving its zone, Ready=True" cluster
NS= wait_reason clusterdnsprovider gitops-capture-taken Ready False
capture clusterdnsprovider gitops-capture-taken clusterdnsprovider-listener-taken "a second embedded ClusterDNSProvider asking for the listen address the first one serves" cluster
capture dnsprovider embedded dnsprovider-ready "an embedded DNSProvider serving its zone, Ready=True"

k -n "$NS" apply -f - <<YAML
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: ready}
spec:
  endpoints:
    - {dnsName: www.example.com, recordType: A, targets: [192.0.2.10]}
---
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: invalid}
spec:
  endpoints:
    - {dnsName: fine.example.com, recordType: A, targets: [192.0.2.20]}
    - {dnsName: broken.example.com, recordType: A, targets: [not-an-ip]}
---
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: unreachable}
spec:
  endpoints:
    - {dnsName: www.example.org, recordType: A, targets: [192.0.2.30]}
YAML
wait_reason dnsendpoint ready Ready True RecordsLive
capture dnsendpoint ready dnsendpoint-ready "a DNSEndpoint whose record is live in the embedded provider, Ready=True RecordsLive"
wait_reason dnsendpoint invalid Stalled True InvalidRecord
capture dnsendpoint invalid dnsendpoint-invalid-record "an A record whose target is no IPv4 address, Stalled=True InvalidRecord"
wait_reason dnsendpoint unreachable Reconciling True Unreachable
capture dnsendpoint unreachable dnsendpoint-unreachable "a record for an RFC2136 DNSProvider whose server port is closed, Reconciling=True Unreachable"
wait_reason dnsprovider unreachable Ready False
capture dnsprovider unreachable dnsprovider-unreachable "an RFC2136 DNSProvider whose server port is closed"

# The younger of two DNSEndpoints asking different data for one record conflicts.
k -n "$NS" apply -f - <<YAML
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: conflict}
spec:
  endpoints:
    - {dnsName: www.example.com, recordType: A, targets: [192.0.2.99]}
YAML
wait_reason dnsendpoint conflict Stalled True Conflict
capture dnsendpoint conflict dnsendpoint-conflict "the younger of two DNSEndpoints asking different data for one record, Stalled=True Conflict"

# Deleting: the records of an unreachable provider cannot be removed, so the finalizer holds
# the object in deletion.
k -n "$NS" delete dnsendpoint unreachable --wait=false >/dev/null
wait_reason dnsendpoint unreachable Ready False Deleting
capture dnsendpoint unreachable dnsendpoint-deleting "deleted while its provider is unreachable, held by the finalizer, Ready=False Deleting"

# Generation lag: the operator is stopped, the spec changes, the status is the last one the
# operator wrote (for the previous generation).
cleanup
k -n "$NS" patch dnsendpoint ready --type merge -p '{"spec":{"endpoints":[{"dnsName":"www.example.com","recordType":"A","targets":["192.0.2.11"]}]}}' >/dev/null
capture dnsendpoint ready dnsendpoint-generation-lag "the Ready DNSEndpoint after its spec changed while the operator was stopped: status of the previous generation"
k -n "$NS" patch dnsprovider embedded --type merge -p '{"spec":{"defaultTTL":60}}' >/dev/null
capture dnsprovider embedded dnsprovider-generation-lag "the Ready DNSProvider after its spec changed while the operator was stopped: status of the previous generation"
k patch clusterdnsprovider gitops-capture --type merge -p '{"spec":{"defaultTTL":60}}' >/dev/null
capture clusterdnsprovider gitops-capture clusterdnsprovider-generation-lag "the Ready ClusterDNSProvider after its spec changed while the operator was stopped: status of the previous generation" cluster
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: new}
spec:
  endpoints:
    - {dnsName: new.example.com, recordType: A, targets: [192.0.2.40]}
YAML
capture dnsendpoint new dnsendpoint-no-status "created while the operator was stopped: no status yet"
