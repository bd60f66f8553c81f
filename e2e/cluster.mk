# Local Kubernetes control plane for end-to-end tests (included by the top Makefile).
# Settings: e2e/cluster/env.sh. After cluster-up: export KUBECONFIG=$$HOME/.cache/extdns/cluster/kubeconfig

E2E_CLUSTER_DIR := $(dir $(lastword $(MAKEFILE_LIST)))cluster

.PHONY: cluster-up cluster-down

cluster-up:
	bash $(E2E_CLUSTER_DIR)/up.sh

cluster-down:
	bash $(E2E_CLUSTER_DIR)/down.sh
