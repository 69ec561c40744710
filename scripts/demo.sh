#!/usr/bin/env bash
# The run command: set up, start the Kubernetes API simulator (tests/src/bin/kube-sim.rs) with
# a crash-looping `api` deployment, point kubectl at it, and run each example alert through
# the example runbooks with `quell run`. The real kubectl really rolls the deployment back.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet -p quell -p quell-tests --bins
target_dir="${CARGO_TARGET_DIR:-target}"

state=$(mktemp -d)
"$target_dir/debug/kube-sim" "$state/kubeconfig" >"$state/kube-sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 100); do [ -s "$state/kubeconfig" ] && break; sleep 0.1; done

cat >"$state/quell.toml" <<TOML
[kubectl]
kubeconfig = "$state/kubeconfig"
context = "kube-sim"
timeout = "10s"
TOML

for alert in examples/alerts/*.json; do
  echo
  echo "\$ quell run --runbooks runbooks --alert $alert --approve"
  "$target_dir/debug/quell" run --config "$state/quell.toml" --runbooks runbooks --alert "$alert" --approve || true
done
