#!/usr/bin/env bash
# Builds one Python runbook (a directory with app.py) into <dir>/<name>.wasm with
# componentize-py, against runbook-sdk/wit and the SDK in runbook-sdk/python. Skips the build
# when the component is newer than every source: componentize-py output is not reproducible,
# so a rebuild would change the sha256 (and the compiled cache) for nothing.
#   scripts/build-python-runbook.sh runbooks/high-error-rate-py
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(cd "${1:?usage: build-python-runbook.sh <runbook dir>}" && pwd)"
name=$(basename "$dir")
out="$dir/${name//-/_}.wasm"
"$root/scripts/python-venv.sh"
py="$root/.quell/venv-python/bin/componentize-py"
if [ -f "$out" ] && [ -z "$(find "$dir" "$root/runbook-sdk/python/quell_runbook" "$root/runbook-sdk/wit" \
      -name '*.py' -newer "$out" -o -name '*.wit' -newer "$out" | head -1)" ]; then
  echo "$out is up to date"
  exit 0
fi
"$py" -d "$root/runbook-sdk/wit" -w runbook componentize app \
  -p "$dir" -p "$root/runbook-sdk/python" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out"
