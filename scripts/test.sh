#!/usr/bin/env bash
# The test command: set up this machine (packages, wasm target, runbooks), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --no-fail-fast "$@"
