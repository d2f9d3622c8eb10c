#!/usr/bin/env bash
# The federation fan-out benchmark of issue #4, section 7 (second half; see bench/README.md "Federation benchmark"):
#   bench/run-federation-fanout.sh [NODES] [PERSONS]      (defaults 20 nodes of 10000 persons; BENCH_FED_RUNS=3)
# Builds the hub jar if it is missing or older than the sources, compiles bench/federation against the jar's classes
# and runs it: NODES fresh databases fed_fanout_nXX with synthetic persons, NODES packaged hubs (BENCH_FED_HUB_OPTS,
# default -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CompileThresholdScaling=0.1) that are peers of each other,
# then warm-up studies until the hubs' code is compiled (at least BENCH_FED_WARMUPS, 3; then until the last of each mode had
# the JIT compilers at most BENCH_FED_JIT_SETTLED, 0.05, of the hubs' CPU; at most BENCH_FED_WARMUPS_MAX, 40) and
# BENCH_FED_RUNS measured ones (default 3) from n01 in each way of posting a study (BENCH_FED_STEPS: both, the default,
# separate or plan). Writes the fan-out section of bench/RESULTS.md (the rest of the file is kept).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="$BENCH_DIR/work/federation-fanout"
COMMAND="$({ env | grep -E '^BENCH_FED_[A-Z_]+=' || true; } | sort | sed -E "s/^([A-Z_]+)=(.*)$/\1='\2'/" | tr '\n' ' ')bench/run-federation-fanout.sh $*"
cd "$ROOT"
. "$BENCH_DIR/common.sh"
ensure_postgres
ensure_hub_jar
# 20 hubs with pools of BENCH_FED_POOL (8) connections: PostgreSQL needs max_connections above that (default 100 is too few)
MAXCONN="$(psql -h 127.0.0.1 -U postgres -Atc 'show max_connections' 2>/dev/null || echo 0)"
NEED=$(( ${1:-20} * (${BENCH_FED_POOL:-8} + 1) + 20 ))
if [ "$MAXCONN" -lt "$NEED" ]; then
  echo "PostgreSQL max_connections is $MAXCONN; ${1:-20} hubs need about $NEED (ALTER SYSTEM SET max_connections = $NEED; then restart PostgreSQL)"
  exit 1
fi
prepare_wal 192
rm -rf "$WORK" && mkdir -p "$WORK"
trap 'stop_recorded "$WORK"' EXIT
CP="target/quarkus-app/app/*:target/quarkus-app/lib/main/*:target/quarkus-app/lib/boot/*"
OUT=bench/work/federation-fanout-classes
rm -rf "$OUT" && mkdir -p "$OUT"
javac -d "$OUT" -cp "$CP" $(find bench/federation bench/shared -name '*.java')
java ${BENCH_JAVA_OPTS:--Xmx512m} -cp "$OUT:$CP" org.hospitalhub.bench.federation.FanOutBench "${1:-20}" "${2:-10000}" \
  "$BENCH_DIR/RESULTS.md" "$COMMAND"
