# extdns developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
KUBECONFIG ?= $(HOME)/.cache/extdns/cluster/kubeconfig
export KUBECONFIG

include e2e/cluster.mk

.PHONY: image image-test help build release test unit e2e e2e-cluster-down install-crds install-gateway-api-crds install-e2e-crds crds check-crds chart-crds chart-test lint run demo demo-down bench bench-large bench-run bench-heap

help: ## This list
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## Debug build of the extdns binary
	$(CARGO) build --bin extdns

release: ## Release build (the image and the benchmark; whole-program optimised, see Cargo.toml)
	$(CARGO) build --release --bin extdns

unit: ## Unit tests of every crate of the workspace (no cluster, no DNS servers)
	$(CARGO) test --workspace --lib --bins

test: ## ALL tests: lint, unit, CRD freshness, provider conformance against real DNS servers, e2e on its own local control plane
	bash e2e/dns/install.sh
	bash e2e/install-tools.sh
	$(MAKE) lint
	EXTDNS_REQUIRE_DNS_SERVERS=1 EXTDNS_REQUIRE_TOOLS=1 $(CARGO) test --workspace --lib --bins --test crds --test samples --test conformance --test gitops --test docs
	$(MAKE) image-test PROFILE=debug
	$(MAKE) chart-test
	$(MAKE) e2e

# The image holds the binary of PROFILE (release or debug; debug info is stripped either
# way). `make test` builds it from the debug binary the e2e suite needs anyway: a cold
# release build would add minutes of CI for the same check (README "Container image").
PROFILE ?= release
IMAGE ?= docker.io/library/extdns:latest
IMAGE_ARCHIVE ?= $(E2E_TARGET_DIR)/extdns-image.tar

image: ## OCI image archive of the PROFILE (release) binary at target/extdns-image.tar, built offline with umoci
	bash e2e/install-tools.sh
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) --bin extdns
	bash image/build.sh $(E2E_TARGET_DIR)/$(PROFILE)/extdns $(IMAGE_ARCHIVE) $(IMAGE)

image-test: image ## Build the image, then run extdns version and crdgen inside it as the Deployment's user
	bash image/test.sh $(IMAGE_ARCHIVE)

install-crds: ## Install crds/ into the cluster of $$KUBECONFIG and wait until they are served
	kubectl apply --server-side --force-conflicts -f crds/extdns.io.yaml
	kubectl wait --for condition=established --timeout=60s crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io

install-gateway-api-crds: ## Install the e2e suite's Gateway API CRDs (e2e/gateway-api/crds.yaml) into $$KUBECONFIG's cluster
	kubectl apply --server-side --force-conflicts -f e2e/gateway-api/crds.yaml
	kubectl wait --for condition=established --timeout=60s crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io crd/tlsroutes.gateway.networking.k8s.io crd/tcproutes.gateway.networking.k8s.io crd/udproutes.gateway.networking.k8s.io

install-e2e-crds: ## Install the other projects' CRDs the e2e suite reads (e2e/crds/*.yaml: external-dns's DNSEndpoint) into $$KUBECONFIG's cluster
	kubectl apply --server-side --force-conflicts $(foreach f,$(wildcard e2e/crds/*.yaml),-f $(f))
	kubectl wait --for condition=established --timeout=60s crd/dnsendpoints.externaldns.k8s.io

# The e2e suite runs on a control plane of its own (other dir and ports), never the one of
# `make demo`/`make run`: an operator left running there would act on the test objects.
# Override TEST_* to run it elsewhere (e.g. TEST_CLUSTER_DIR=... TEST_APISERVER_PORT=...).
TEST_CLUSTER_DIR ?= $(HOME)/.cache/extdns/e2e-cluster
TEST_ETCD_PORT ?= 25790
TEST_ETCD_PEER_PORT ?= 25800
TEST_APISERVER_PORT ?= 18443
TEST_KCM_PORT ?= 10557
TEST_ENV := EXTDNS_CLUSTER_DIR=$(TEST_CLUSTER_DIR) EXTDNS_ETCD_PORT=$(TEST_ETCD_PORT) EXTDNS_ETCD_PEER_PORT=$(TEST_ETCD_PEER_PORT) EXTDNS_APISERVER_PORT=$(TEST_APISERVER_PORT) EXTDNS_KCM_PORT=$(TEST_KCM_PORT)
TEST_KUBECONFIG := $(TEST_CLUSTER_DIR)/kubeconfig
E2E_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

# A cluster this target started is stopped at its end (E2E_KEEP_CLUSTER=1 keeps it); one that
# was already running stays, and so does one that failed to start (its logs tell why). The suite gets the cluster's settings in its environment, so
# e2e/cluster/restart-apiserver.sh restarts this cluster's apiserver.
e2e: build ## End-to-end suite on its own local control plane (TEST_CLUSTER_DIR; started and stopped if it was not running)
	@set -euo pipefail; \
	if $(TEST_ENV) bash e2e/cluster/up.sh --status; then started=; else started=1; fi; \
	$(TEST_ENV) bash e2e/cluster/up.sh; \
	if [ -n "$$started" ] && [ -z "$(E2E_KEEP_CLUSTER)" ]; then trap '$(TEST_ENV) bash e2e/cluster/down.sh' EXIT; fi; \
	$(MAKE) --no-print-directory install-crds KUBECONFIG=$(TEST_KUBECONFIG); \
	$(MAKE) --no-print-directory install-gateway-api-crds KUBECONFIG=$(TEST_KUBECONFIG); \
	$(MAKE) --no-print-directory install-e2e-crds KUBECONFIG=$(TEST_KUBECONFIG); \
	$(TEST_ENV) KUBECONFIG=$(TEST_KUBECONFIG) EXTDNS_BIN=$(E2E_TARGET_DIR)/debug/extdns EXTDNS_REQUIRE_DNS_SERVERS=1 \
		$(CARGO) test --features e2e --test e2e -- --test-threads=1

# Same cluster handling as e2e. The chart test makes its own namespace and release
# (chart-e2e), whose ClusterDNSProvider admits no namespace, and removes them at its end.
chart-test: build ## Helm chart charts/extdns with the Helm engine (helm-python-sdk): lint, goldens, failing values, then install/upgrade/uninstall on the e2e control plane
	@set -euo pipefail; \
	if $(TEST_ENV) bash e2e/cluster/up.sh --status; then started=; else started=1; fi; \
	$(TEST_ENV) bash e2e/cluster/up.sh; \
	if [ -n "$$started" ] && [ -z "$(E2E_KEEP_CLUSTER)" ]; then trap '$(TEST_ENV) bash e2e/cluster/down.sh' EXIT; fi; \
	KUBECONFIG=$(TEST_KUBECONFIG) EXTDNS_BIN=$(E2E_TARGET_DIR)/debug/extdns bash charts/test.sh --cluster

e2e-cluster-down: ## Stop the e2e suite's control plane (TEST_CLUSTER_DIR)
	$(TEST_ENV) bash e2e/cluster/down.sh

crds: ## Regenerate crds/ from the Rust types (and the chart's copy)
	$(CARGO) run -q --bin extdns -- crdgen > crds/extdns.io.yaml
	$(MAKE) --no-print-directory chart-crds

chart-crds: ## Copy crds/ into the Helm chart (charts/extdns/crds; make chart-test fails when they differ)
	cp crds/extdns.io.yaml charts/extdns/crds/extdns.io.yaml

check-crds: ## Fail when crds/ is stale
	$(CARGO) test -q --test crds

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features e2e,bench -- -D warnings

run: build ## Run the operator against $$KUBECONFIG (one local process: no leader election)
	./target/debug/extdns run --leader-elect=false

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

bench-heap: ## Heap profile (heaptrack, debug build) of HEAP_N (10000) embedded DNSEndpoints on a control plane of its own; bytes per record per structure (target/bench/heap)
	$(CARGO) build --bin extdns --no-default-features
	bash e2e/bench/heap.sh

# One benchmark part on a fresh cluster, torn down afterwards.
bench-run:
	$(BENCH_ENV) bash e2e/cluster/up.sh
	set -o pipefail; trap '$(BENCH_ENV) bash e2e/cluster/down.sh' EXIT; \
	KUBECONFIG=$(BENCH_KUBECONFIG) kubectl apply --server-side --force-conflicts -f crds/extdns.io.yaml && \
	KUBECONFIG=$(BENCH_KUBECONFIG) kubectl wait --for condition=established --timeout=60s crd/dnsendpoints.extdns.io crd/dnsproviders.extdns.io crd/clusterdnsproviders.extdns.io && \
	BENCH_ONLY=$(BENCH_ONLY) KUBECONFIG=$(BENCH_KUBECONFIG) EXTDNS_BIN=$(BENCH_TARGET_DIR)/release/extdns $(BENCH_TARGET_DIR)/release/extdns-bench 2>&1 | tee $(CURDIR)/target/bench/output-$(BENCH_ONLY).txt
