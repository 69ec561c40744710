#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml offline against the Kubernetes schemas
# (kubernetes-validate from PyPI, in its own venv under .quell/), strictly: an unknown or
# misspelt field fails. The ServiceMonitor in deploy/kubernetes/optional/ needs the Prometheus
# Operator's CRD and is not validated here.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.quell/venv-deploy
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
echo "deploy/kubernetes: every manifest validates against Kubernetes 1.37"
