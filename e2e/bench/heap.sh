#!/usr/bin/env bash
# Heap profile of the operator holding HEAP_N one-A-record DNSEndpoints of one embedded
# provider, under heaptrack: which structures hold the memory, in bytes per record.
#
# It starts its own local control plane (its own directory and ports, never the e2e or the
# benchmark one), applies the CRDs, runs the operator under heaptrack with the flags the
# benchmark uses, creates the objects, waits until the last name is served and every object
# is Ready, kills the operator and prints two tables of heaptrack's figures, grouped by the
# innermost extdns function on each allocation's stack: at the peak, and what was held at the
# end with every object Ready.
#
#   make bench-heap                      # HEAP_N=10000, debug build
#   HEAP_N=2000 bash e2e/bench/heap.sh   # EXTDNS_BIN=<binary> to profile another build
#   HEAP_HOLD=70 ...                     # keep running 70 s after every object is Ready
#   bash e2e/bench/heap.sh summarize target/bench/heap 10000 live   # a table of a run again
#
# Use a debug build without the default `jemalloc` feature (`cargo build --bin extdns
# --no-default-features`): heaptrack sees the system allocator's calls only. The data layout is
# the same as in release and an incremental build is fast; resident-set figures belong to the
# release benchmark (`make bench`), or to HEAP_PROFILER=none with a release binary.
# Output (profile, operator log, the grouped table) goes to HEAP_OUT (target/bench/heap).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# Bytes per innermost extdns function on the stack (the code that asked for them), from
# heaptrack_print's flame-graph stacks, then the same bytes by the structure that holds them:
# summarize STACKS N.
summarize() {
    awk -v n="$2" '
    # The structure that holds what a function allocated (first match wins).
    function structure(site) {
        if (site ~ /router::Router::upsert_endpoint/) return "router: object table (EpEntry)"
        if (site ~ /router::EndpointSnapshot|router::PriorCondition|router::prior_condition|router::exact|router::summarize_names|validate::|provider::ep_key|endpoint::normalize_/) return "router: object snapshot (records, key, conditions)"
        if (site ~ /router::Router::(route|providers_for|handle_report|account)/) return "router: routes, results, budgets"
        if (site ~ /worker::Worker::set_desired/) return "worker: desired records"
        if (site ~ /worker::Worker::(report|record_result)/) return "worker: record results"
        if (site ~ /worker::apply_to_cache|worker::Worker::refresh/) return "worker: zone cache"
        if (site ~ /inmemory::|endpoint::Endpoint::key|apply::apply_changes/) return "embedded: record store"
        if (site ~ /embedded::|wire_name::/) return "embedded: served snapshot"
        if (site ~ /status_writer::/) return "status writer"
        if (site ~ /patch_finalizers/) return "finalizer patches"
        if (site == "(outside extdns)") return site
        return "other extdns code"
    }
    {
        bytes = $NF; sub(/ [0-9]+$/, "")
        k = split($0, frames, ";"); site = "(outside extdns)"
        # The generic map type is no structure of its own: its caller is.
        for (i = k; i >= 1; i--) if (frames[i] ~ /^(extdns|extdns_core|extdns_providers)::/ && frames[i] !~ /^extdns_core::vec_map::/) { site = frames[i]; break }
        # Legacy-mangled names: drop the hash and the file, spell the escapes.
        sub(/::h[0-9a-f]+ \(.*\)$/, "", site)
        gsub(/_\$u7b\$\$u7b\$closure\$u7d\$\$u7d\$/, "{{closure}}", site)
        gsub(/\$LT\$/, "<", site); gsub(/\$GT\$/, ">", site); gsub(/\$C\$/, ",", site); gsub(/\$u20\$/, " ", site)
        sum[site] += bytes; by[structure(site)] += bytes; total += bytes
    }
    END {
        printf "%-12s %-10s %s\n", "bytes", "per record", "innermost extdns function"
        for (s in sum) printf "%-12d %-10.0f %s\n", sum[s], sum[s] / n, s | "sort -rn | head -40"
        close("sort -rn | head -40")
        printf "%-12d %-10.0f %s\n\n", total, total / n, "(total)"
        printf "%-12s %-10s %s\n", "bytes", "per record", "structure"
        for (s in by) printf "%-12d %-10.0f %s\n", by[s], by[s] / n, s | "sort -rn"
        close("sort -rn")
        printf "%-12d %-10.0f %s\n", total, total / n, "(total)"
    }' "$1"
}

# `heap.sh summarize DIR N [peak|live]`: a table of an earlier run's profile again.
if [ "${1:-}" = summarize ]; then
    summarize "$2/${4:-peak}.stacks" "$3"
    exit 0
fi

export EXTDNS_CLUSTER_DIR="${EXTDNS_CLUSTER_DIR:-$HOME/.cache/extdns/mem-cluster}"
export EXTDNS_ETCD_PORT="${EXTDNS_ETCD_PORT:-27790}"
export EXTDNS_ETCD_PEER_PORT="${EXTDNS_ETCD_PEER_PORT:-27800}"
export EXTDNS_APISERVER_PORT="${EXTDNS_APISERVER_PORT:-17443}"
export EXTDNS_KCM_PORT="${EXTDNS_KCM_PORT:-10757}"
export KUBECONFIG="$EXTDNS_CLUSTER_DIR/kubeconfig"

n="${HEAP_N:-10000}"
profiler="${HEAP_PROFILER:-heaptrack}"
dns_port="${HEAP_DNS_PORT:-27853}"
metrics_port="${HEAP_METRICS_PORT:-27880}"
out="${HEAP_OUT:-$root/target/bench/heap}"
bin="${EXTDNS_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/extdns}"
ns="heap"
zone="heap.bench.test"

for tool in heaptrack heaptrack_print kubectl dig jq; do
    command -v "$tool" >/dev/null || { echo "heap.sh: $tool is missing" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "heap.sh: no operator binary at $bin (cargo build --bin extdns --no-default-features)" >&2; exit 1; }
mkdir -p "$out"

# A fresh control plane (one left by an interrupted run goes first).
bash "$root/e2e/cluster/down.sh" >"$out/cluster.log" 2>&1 || true
bash "$root/e2e/cluster/up.sh" >>"$out/cluster.log" 2>&1
operator=""
tracer=""
cleanup() {
    # The operator (under heaptrack) first, then the control plane it talks to.
    if [ -n "$operator" ]; then kill "$operator" 2>/dev/null || true; fi
    if [ -n "$tracer" ]; then wait "$tracer" 2>/dev/null || true; fi
    # Always a fresh control plane: the objects carry the operator's finalizer, so a kept
    # one could not even delete them without an operator running.
    bash "$root/e2e/cluster/down.sh" >>"$out/cluster.log" 2>&1 || true
}
trap cleanup EXIT

kubectl apply --server-side --force-conflicts -f "$root/crds/extdns.io.yaml" >/dev/null
kubectl wait --for condition=established --timeout=60s \
    crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io >/dev/null
for x in extdns-bench "$ns"; do
    kubectl create namespace "$x" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done

rm -f "$out"/heaptrack.extdns.*
# The flags of the benchmark's operator (e2e/bench/main.rs `Operator::spawn`).
flags=(run --metrics-addr "127.0.0.1:$metrics_port" --operator-namespace extdns-bench
    --leader-elect=false --namespaced-embedded --namespaced-custom-endpoint)
if [ "$profiler" = none ]; then
    # Resident set only, without heaptrack's own memory (HEAP_PROFILER=none), e.g. to compare
    # allocators or MALLOC_ARENA_MAX settings.
    RUST_LOG="info,kube=warn" "$bin" "${flags[@]}" 2>"$out/operator.log" &
    operator=$!
    tracer=$operator
else
    RUST_LOG="info,kube=warn" heaptrack -o "$out/heaptrack.extdns" "$bin" "${flags[@]}" \
        >"$out/heaptrack.log" 2>"$out/operator.log" &
    tracer=$!
fi
# heaptrack runs the operator as its child; its pid is the one to stop and to read RSS of.
for _ in $(seq 100); do
    [ -n "$operator" ] && break
    operator="$(pgrep -P "$tracer" -x extdns || true)"
    sleep 0.1
done
[ -n "$operator" ] || { echo "heap.sh: the operator did not start (see $out)" >&2; exit 1; }

kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: extdns.io/v1alpha1
kind: DNSProvider
metadata: {name: emb}
spec:
  embedded: {zones: ["$zone"], listen: "127.0.0.1:$dns_port"}
  domains: {include: ["$zone"]}
  policy: sync
  registry: {txt: {ownerId: bench}}
  defaultTTL: 30
EOF

rss() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$operator/status"; }
# What the resident set is made of: the heap and stacks (anonymous) against the binary's code
# and data mapped from its file, which the kernel can drop and read again.
rss_parts() {
    awk '$1 == "Rss:" {r = $2} $1 == "Anonymous:" {a = $2}
        END {printf "anonymous %.1f MiB, file-backed %.1f MiB", a / 1024, (r - a) / 1024}' \
        "/proc/$operator/smaps_rollup"
}
echo "heap: operator pid $operator (profiler: $profiler), RSS $(rss VmRSS) MiB before the objects ($(rss_parts))"

# The resident set over time (seconds since the objects started, RSS and anonymous MiB), to
# see when the peak happens.
( t0=$(date +%s.%N)
  while [ -e "/proc/$operator/smaps_rollup" ]; do
      awk -v t="$(date +%s.%N)" -v t0="$t0" '$1 == "Rss:" {r = $2} $1 == "Anonymous:" {a = $2}
          END {printf "%.1f %.1f %.1f\n", t - t0, r / 1024, a / 1024}' "/proc/$operator/smaps_rollup" 2>/dev/null
      sleep 0.1
  done >"$out/rss.txt" ) &
# The objects, one A record each, written by 4 kubectl processes at once.
start=$(date +%s)
parts=4
for p in $(seq 0 $((parts - 1))); do
    for i in $(seq "$p" "$parts" $((n - 1))); do
        printf -- '---\napiVersion: extdns.io/v1alpha1\nkind: DNSEndpoint\nmetadata: {name: r%d}\nspec:\n  endpoints:\n  - {dnsName: r%d.%s, recordType: A, targets: ["10.%d.%d.%d"]}\n' \
            "$i" "$i" "$zone" $((i / 62500 % 250)) $((i / 250 % 250)) $((i % 250 + 1))
    done >"$out/objects-$p.yaml"
done
pids=()
for p in $(seq 0 $((parts - 1))); do
    kubectl -n "$ns" create -f "$out/objects-$p.yaml" >/dev/null &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "heap: $n DNSEndpoints written in $(($(date +%s) - start)) s"

last=$((n - 1))
want="10.$((last / 62500 % 250)).$((last / 250 % 250)).$((last % 250 + 1))"
deadline=$(($(date +%s) + ${HEAP_TIMEOUT:-900}))
until [ "$(dig +short +time=1 +tries=1 -p "$dns_port" @127.0.0.1 "r$last.$zone" A 2>/dev/null)" = "$want" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "heap.sh: r$last.$zone not served in time" >&2; exit 1; }
    sleep 1
done
echo "heap: r$last.$zone served after $(($(date +%s) - start)) s"
ready() {
    kubectl -n "$ns" get dnsendpoints -o json |
        jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length'
}
until [ "$(ready)" -ge "$n" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "heap.sh: not all Ready in time" >&2; exit 1; }
    sleep 2
done
echo "heap: all $n Ready after $(($(date +%s) - start)) s"
# Let the last status writes and reports drain before the profile ends; HEAP_HOLD seconds
# (5) in all, e.g. past a new provider's deletion grace (60 s), which ends in a plan of every
# name.
sleep "${HEAP_HOLD:-5}"
echo "heap: RSS $(rss VmRSS) MiB ($(rss_parts)), peak $(rss VmHWM) MiB (profiler: $profiler)"

# SIGKILL: nothing is freed, so what heaptrack reports as leaked is exactly what the operator
# held at this moment, with every object Ready (the steady state); the peak is the highest
# point on the way, objects arriving in bulk included.
kill -KILL "$operator"
wait "$tracer" 2>/dev/null || true
operator=""
tracer=""
[ "$profiler" = none ] && exit 0
profile="$(ls "$out"/heaptrack.extdns.* | head -n1)"
heaptrack_print -f "$profile" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
    --peak-limit 25 --sub-peak-limit 3 -F "$out/peak.stacks" --flamegraph-cost-type peak \
    >"$out/peaks.txt"
heaptrack_print -f "$profile" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    -F "$out/live.stacks" --flamegraph-cost-type leaked >/dev/null
grep -E '^(peak heap memory consumption|peak RSS)' "$out/peaks.txt" || true
grep -E '^total memory leaked' "$out/peaks.txt" | sed 's/total memory leaked/held with all objects Ready/' || true
echo "--- at the peak"
summarize "$out/peak.stacks" "$n" | tee "$out/by-function-peak.txt"
echo "--- held with all $n objects Ready"
summarize "$out/live.stacks" "$n" | tee "$out/by-function-live.txt"
echo "heap: profile $profile; peaks in $out/peaks.txt"
