#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml (one replica on SQLite) and
# deploy/kubernetes/postgres/*.yaml (two replicas on PostgreSQL) offline against the Kubernetes
# schemas (kubernetes-validate from PyPI, in its own venv under .quell/), strictly: an unknown
# or misspelt field fails. Each manifest is validated on its own, so the objects the PostgreSQL
# set replaces by name (Deployment, ConfigMap, PodDisruptionBudget) do not clash. The
# ServiceMonitor in deploy/kubernetes/optional/ needs the Prometheus Operator's CRD and is not
# validated here.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.quell/venv-deploy
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
"$venv/bin/kubernetes-validate" --strict --quiet \
    deploy/kubernetes/*.yaml deploy/kubernetes/postgres/*.yaml
echo "deploy/kubernetes and deploy/kubernetes/postgres: every manifest validates against Kubernetes 1.37"
