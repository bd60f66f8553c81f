#!/usr/bin/env bash
# Tests of charts/extdns with the real Helm engine: PyPI's helm-python-sdk embeds Helm v4's Go
# SDK (lint, template, install, upgrade, uninstall; no helm binary). Installs it into a cached
# venv, then runs charts/tests/run.py with the arguments given (--cluster: also install into
# $KUBECONFIG's cluster).
set -euo pipefail
venv=${EXTDNS_HELM_VENV:-$HOME/.cache/extdns/helm-venv}
want="helm-python-sdk==0.2.2 PyYAML==6.0.2"
mkdir -p "$(dirname "$venv")"
(
	flock 9
	if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
		rm -rf "$venv"
		python3 -m venv "$venv"
		# shellcheck disable=SC2086 # $want is a list of requirements
		"$venv/bin/pip" install -q $want
		echo "$want" >"$venv/.installed"
	fi
) 9>"$venv.lock"
exec "$venv/bin/python" "$(dirname "$0")/tests/run.py" "$@"
