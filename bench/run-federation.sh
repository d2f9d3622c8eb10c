#!/usr/bin/env bash
# The federation benchmark of issue #4, section 7 (first half; see bench/README.md "Federation benchmark"):
#   bench/run-federation.sh [PERSONS]      (default 1000000)
# Builds the hub jar if it is missing or older than the sources, compiles bench/federation against the jar's classes
# and runs it: a fresh database bench_federation, N synthetic persons, then the cohort, variables and analysis steps
# timed (twice). Writes the federation section of bench/RESULTS.md (the rest of the file is kept).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
cd "$ROOT"
. "$BENCH_DIR/common.sh"
ensure_postgres
ensure_hub_jar
CP="target/quarkus-app/app/*:target/quarkus-app/lib/main/*:target/quarkus-app/lib/boot/*"
OUT=bench/work/federation-classes
rm -rf "$OUT" && mkdir -p "$OUT"
javac -d "$OUT" -cp "$CP" $(find bench/federation bench/shared -name '*.java')
java ${BENCH_JAVA_OPTS:--Xmx1g} -cp "$OUT:$CP" org.hospitalhub.bench.federation.FederationBench "${1:-1000000}" \
  "$BENCH_DIR/RESULTS.md" "bench/run-federation.sh $*"
