#!/usr/bin/env bash
# `make demo`: a local control plane, the CRDs and samples, extdns with an embedded DNS
# server on 127.0.0.1:5353, and a DNS answer for the sample Service. `make demo-down` stops it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=e2e/cluster/env.sh
. e2e/cluster/env.sh
DEMO_DIR="$EXTDNS_CACHE/demo"
PIDFILE="$DEMO_DIR/extdns.pid"
LOG="$DEMO_DIR/extdns.log"
say() { printf '\n\033[1m[extdns demo] %s\033[0m\n' "$*"; }

stop_operator() {
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        kill "$(cat "$PIDFILE")"
        for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
}

if [ "${1:-}" = down ]; then
    stop_operator
    bash e2e/cluster/down.sh
    exit 0
fi

mkdir -p "$DEMO_DIR"
say "installing dig (bind9-dnsutils) if missing"
command -v dig >/dev/null || bash e2e/dns/install.sh

say "building extdns (optimised, profile demo)"
cargo build --profile demo --bin extdns

say "starting the local control plane (first run builds kube-apiserver: ~7 minutes)"
bash e2e/cluster/up.sh
export KUBECONFIG="$EXTDNS_KUBECONFIG"
K="$EXTDNS_KUBECTL"

say "installing the CRDs from crds/"
"$K" apply --server-side --force-conflicts -f crds/extdns.io.yaml
"$K" wait --for condition=established --timeout=60s \
    crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io

say "applying samples/"
"$K" apply -f samples/

say "starting extdns (log: $LOG)"
stop_operator
nohup "${CARGO_TARGET_DIR:-$ROOT/target}/demo/extdns" run --leader-elect=false --metrics-addr 127.0.0.1:18080 --operator-namespace default >"$LOG" 2>&1 &
echo $! >"$PIDFILE"

say "giving the sample LoadBalancer Service and Ingress an address, as a cloud controller would"
"$K" patch service web --subresource=status --type=merge \
    -p '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.80"}]}}}'
"$K" patch ingress shop --subresource=status --type=merge \
    -p '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.81"}]}}}'

say "waiting for the DNSEndpoint of the Service to be Ready"
for _ in $(seq 300); do
    "$K" get dnsendpoint web-service >/dev/null 2>&1 && break
    kill -0 "$(cat "$PIDFILE")" || { tail -30 "$LOG"; exit 1; }
    sleep 0.1
done
"$K" wait --for=condition=Ready --timeout=60s dnsendpoint/web-service dnsendpoint/static || { tail -30 "$LOG"; exit 1; }

say "kubectl get dnsendpoints"
"$K" get dnsendpoints

say "dig @127.0.0.1 -p 5353 web.example.com"
answer=$(dig +short +time=2 +tries=3 @127.0.0.1 -p 5353 web.example.com A)
echo "$answer"
[ "$answer" = "192.0.2.80" ] || { echo "unexpected answer: '$answer'"; tail -30 "$LOG"; exit 1; }
dig +noall +answer @127.0.0.1 -p 5353 shop.example.com A
dig +noall +answer @127.0.0.1 -p 5353 docs.example.com A

say "the invalid sample is reported, not dropped:"
"$K" get dnsendpoint invalid -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

cat <<EOT

The cluster and extdns keep running. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl patch service web --subresource=status --type=merge -p '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.99"}]}}}'
  dig +short @127.0.0.1 -p 5353 web.example.com
Stop everything with: make demo-down
EOT
