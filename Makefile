# extdns developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
KUBECONFIG ?= $(HOME)/.cache/extdns/cluster/kubeconfig
export KUBECONFIG

include e2e/cluster.mk

.PHONY: help build release test unit e2e install-crds crds check-crds lint run demo demo-down bench bench-large bench-run

help: ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## Debug build of the extdns binary
	$(CARGO) build --bin extdns

release: ## Release build (used by the demo and the benchmark)
	$(CARGO) build --release --bin extdns

unit: ## Unit tests only (no cluster, no DNS servers)
	$(CARGO) test --lib --bins

test: ## ALL tests: lint, unit, CRD freshness, provider conformance against real DNS servers, e2e against a real control plane
	bash e2e/dns/install.sh
	$(MAKE) lint
	EXTDNS_REQUIRE_DNS_SERVERS=1 $(CARGO) test --lib --bins --test crds --test samples --test conformance
	$(MAKE) e2e

install-crds: ## Install crds/ into the cluster of $$KUBECONFIG and wait until they are served
	kubectl apply --server-side --force-conflicts -f crds/extdns.io.yaml
	kubectl wait --for condition=established --timeout=60s crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io

e2e: cluster-up build install-crds ## End-to-end suite against the local control plane (starts it if needed)
	EXTDNS_BIN=$(CURDIR)/target/debug/extdns EXTDNS_REQUIRE_DNS_SERVERS=1 $(CARGO) test --features e2e --test e2e -- --test-threads=1

crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run -q --bin extdns -- crdgen > crds/extdns.io.yaml

check-crds: ## Fail when crds/ is stale
	$(CARGO) test -q --test crds

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features e2e,bench -- -D warnings

run: build ## Run the operator against $$KUBECONFIG
	./target/debug/extdns run

demo: ## Local cluster + operator + embedded DNS; resolves a sample name with dig
	bash e2e/demo.sh

demo-down: ## Stop the demo operator and the local cluster
	bash e2e/demo.sh down

# The benchmark runs on its own control plane (other dir and ports), never the e2e one.
BENCH_ENV := EXTDNS_CLUSTER_DIR=$(HOME)/.cache/extdns/bench-cluster EXTDNS_ETCD_PORT=23890 EXTDNS_ETCD_PEER_PORT=23900 EXTDNS_APISERVER_PORT=16543 EXTDNS_KCM_PORT=10357
BENCH_KUBECONFIG := $(HOME)/.cache/extdns/bench-cluster/kubeconfig
BENCH_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

BENCH_N_LARGE ?= 100000
export BENCH_N_LARGE

bench: ## Benchmark on separate local clusters: latency (empty, at scale, noisy neighbour), scale, steady state, restart, nsupdate floor, then BENCH_N_LARGE on the embedded provider (target/bench/results.json; BENCH_N, BENCH_K, BENCH_IDLE, BENCH_N_LARGE=0 skips)
	bash e2e/dns/install.sh
	# One build for both binaries: the library is then compiled once, with one feature set.
	$(CARGO) build --release --features bench --bin extdns --bin extdns-bench
	mkdir -p target/bench
	$(MAKE) bench-run BENCH_ONLY=main
	if [ "$(BENCH_N_LARGE)" != 0 ]; then $(MAKE) bench-run BENCH_ONLY=large; fi

bench-large: ## Only the BENCH_N_LARGE scenario of make bench (merged into target/bench/results.json)
	bash e2e/dns/install.sh
	$(CARGO) build --release --features bench --bin extdns --bin extdns-bench
	mkdir -p target/bench
	$(MAKE) bench-run BENCH_ONLY=large

# One benchmark part on a fresh cluster, torn down afterwards.
bench-run:
	$(BENCH_ENV) bash e2e/cluster/up.sh
	set -o pipefail; trap '$(BENCH_ENV) bash e2e/cluster/down.sh' EXIT; \
	KUBECONFIG=$(BENCH_KUBECONFIG) kubectl apply --server-side --force-conflicts -f crds/extdns.io.yaml && \
	KUBECONFIG=$(BENCH_KUBECONFIG) kubectl wait --for condition=established --timeout=60s crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io && \
	BENCH_ONLY=$(BENCH_ONLY) KUBECONFIG=$(BENCH_KUBECONFIG) EXTDNS_BIN=$(BENCH_TARGET_DIR)/release/extdns $(BENCH_TARGET_DIR)/release/extdns-bench 2>&1 | tee $(CURDIR)/target/bench/output-$(BENCH_ONLY).txt
