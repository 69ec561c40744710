#!/usr/bin/env bash
# Builds the example runbooks and the test guests as wasm32-wasip2 components and puts each
# runbook's component beside its policy.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
runbooks=(high-error-rate disk-space k8s-context)
guests=(probe minimal)
args=()
for p in "${runbooks[@]}" "${guests[@]}"; do args+=(-p "$p"); done
cargo build --quiet --profile wasm --target wasm32-wasip2 "${args[@]}"
target_dir="${CARGO_TARGET_DIR:-target}"
for rb in "${runbooks[@]}"; do
  cp "$target_dir/wasm32-wasip2/wasm/${rb//-/_}.wasm" "runbooks/$rb/"
done
echo "runbooks built: ${runbooks[*]}"
