#!/usr/bin/env bash
# Builds the example runbooks and the test guests as wasm32-wasip2 components and puts each
# runbook's component beside its policy.toml: the Rust ones with cargo, the Python ones
# (a directory with app.py) with componentize-py from .quell/venv-python (scripts/setup.sh
# makes it).
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

python_built=()
for dir in runbooks/*/ tests/python-guests/*/; do
  [ -f "$dir/app.py" ] || continue
  name=$(basename "$dir")
  scripts/build-python-runbook.sh "$dir" >/dev/null
  python_built+=("$name")
done
[ ${#python_built[@]} -eq 0 ] || echo "python runbooks built: ${python_built[*]}"
