#!/usr/bin/env bash
# The relay benchmark of issue #5, section 9 (see bench/README.md "Relay benchmark"):
#   bench/run-relay.sh [SECONDS] [RATE]      (defaults 60 s at 5000 packets/s, after BENCH_RELAY_WARMUP_SECONDS=15)
# Builds the hub jar if it is missing or older than the sources, compiles bench/relay against the jar's classes and
# runs it: three packaged hubs as relay nodes (county -> city -> province) on fresh databases relay_bench_*, the
# county's BENCH_RELAY_CLIENTS (10000) clients, the rate phase, then a ramp (BENCH_RELAY_STEPS, BENCH_RELAY_STEP_SECONDS)
# to saturation. Writes the relay section of bench/RESULTS.md (the rest of the file is kept).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="$BENCH_DIR/work/relay"
COMMAND="$({ env | grep -E '^BENCH_RELAY_[A-Z_]+=' || true; } | sort | sed -E "s/^([A-Z_]+)=(.*)$/\1='\2'/" | tr '\n' ' ')bench/run-relay.sh $*"
cd "$ROOT"
. "$BENCH_DIR/common.sh"
ensure_postgres
ensure_hub_jar
# 10,000 client connections in the bench JVM and as many in the county node
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 12000 ] || { echo "ulimit -n is $(ulimit -n): 10,000 clients need at least 12000 open files"; exit 1; }
fi
# At 5,000 packets/s the three nodes write about 20 MB of WAL per second: with max_wal_size 1GB PostgreSQL checkpoints
# every 11-26 s (it logs "checkpoints are occurring too frequently") and the full-page writes after each one show in the
# hops' p99. The recorded runs used 4GB; RESULTS.md states the value a run had.
WALMAX="$(psql -h 127.0.0.1 -U postgres -Atc "SELECT setting FROM pg_settings WHERE name = 'max_wal_size'" 2>/dev/null || echo 0)"
if [ "${WALMAX:-0}" -lt 4096 ]; then
  echo "Note: PostgreSQL max_wal_size is ${WALMAX} MB; the recorded runs used 4GB (ALTER SYSTEM SET max_wal_size = '4GB'; SELECT pg_reload_conf();)"
fi
# ... and a new 16 MB WAL segment every 0.8 s, unless the server has old ones to reuse (common.sh, prepare_wal).
prepare_wal 192
rm -rf "$WORK" && mkdir -p "$WORK"
# The bench JVM stops the nodes itself (shutdown hook); if it was killed outright, the trap stops them.
trap 'stop_recorded "$WORK"' EXIT
CP="target/quarkus-app/app/*:target/quarkus-app/lib/main/*:target/quarkus-app/lib/boot/*"
OUT=bench/work/relay-classes
rm -rf "$OUT" && mkdir -p "$OUT"
javac -d "$OUT" -cp "$CP" $(find bench/relay bench/shared -name '*.java')
java ${BENCH_JAVA_OPTS:--Xmx1g} -cp "$OUT:$CP" org.hospitalhub.bench.relay.RelayBench "${1:-60}" "${2:-5000}" \
  "$BENCH_DIR/RESULTS.md" "$COMMAND"
