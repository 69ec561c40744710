#!/usr/bin/env bash
# A benchmark on PostgreSQL: a throwaway cluster on disk with PostgreSQL's durable defaults
# (fsync and synchronous_commit on), Debian's server run as `postgres` when we are root.
# Usage: scripts/bench-pg.sh [ingest|claims] [arguments for the benchmark]
#   QUELL_BENCH_REPLICAS=3 scripts/bench-pg.sh ingest   three daemons on the one database
#   QUELL_BENCH_STATEMENTS=1 scripts/bench-pg.sh ingest  then the statements the server ran
#     most (pg_stat_statements): calls, and server time in total and per call
set -euo pipefail
cd "$(dirname "$0")/.."
bench=ingest
case "${1:-}" in ingest|claims) bench=$1; shift ;; esac
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/quell-bench-pg.XXXXXX)
chmod 755 "$dir"
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
statements=
[ -n "${QUELL_BENCH_STATEMENTS:-}" ] && statements="-c shared_preload_libraries=pg_stat_statements"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_server "$bin/initdb" -D "$dir/data" -U quell --auth=trust --encoding=UTF8 --locale=C >/dev/null
as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200 $statements" start >/dev/null
trap 'as_server "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null; rm -rf "$dir"' EXIT
psql -X -q -h 127.0.0.1 -p "$port" -U quell -d postgres -c "CREATE DATABASE quell"
echo "PostgreSQL $(psql -X -A -t -h 127.0.0.1 -p "$port" -U quell -d quell -c 'SHOW server_version'):" \
    "fsync=$(psql -X -A -t -h 127.0.0.1 -p "$port" -U quell -d quell -c 'SHOW fsync')," \
    "synchronous_commit=$(psql -X -A -t -h 127.0.0.1 -p "$port" -U quell -d quell -c 'SHOW synchronous_commit')"
[ -n "$statements" ] && psql -X -q -h 127.0.0.1 -p "$port" -U quell -d quell \
    -c "CREATE EXTENSION pg_stat_statements"
QUELL_BENCH_DATABASE_URL="postgres://quell@127.0.0.1:$port/quell" \
    cargo bench -p quell --bench "$bench" -- "$@"
if [ -n "$statements" ]; then
    psql -X -h 127.0.0.1 -p "$port" -U quell -d quell -c "
        SELECT calls, round(total_exec_time::numeric, 0) AS total_ms,
               round((total_exec_time / calls * 1000)::numeric, 1) AS us_per_call,
               left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
        FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 30"
fi
