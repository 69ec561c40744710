#!/usr/bin/env bash
# Daemon start-up to a ready /readyz, with the shipped runbooks (Rust and Python) and their
# compiled cache warm: starts `quell serve` N times (default 10) on a fresh database each
# time and prints each time and the median, in milliseconds.
#   cargo build --release -p quell && scripts/bench-startup.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
quell="${CARGO_TARGET_DIR:-target}/release/quell"
[ -x "$quell" ] || { echo "error: $quell is missing: cargo build --release -p quell" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/quell.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[database]
path = "$work/quell.db"
[runbooks]
dir = "$PWD/runbooks"
[sandbox]
cache_dir = "$work/cache"
[postmortems]
dir = "$work/postmortems"
TOML
start_once() {
  rm -f "$work/quell.db"*
  local t0 t1
  t0=$(date +%s%N)
  "$quell" serve --config "$work/quell.toml" >"$work/log" 2>&1 &
  local pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo $(( (t1 - t0) / 1000000 ))
}
first=$(start_once)
echo "cold (compiles every component into the cache): ${first} ms"
times=()
for _ in $(seq "$n"); do times+=("$(start_once)"); done
echo "warm: ${times[*]} ms"
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print "median warm start to /readyz: " m " ms"}'
