#!/usr/bin/env bash
# The qc benchmark of issue #3, section 8 (see bench/README.md "qc benchmark"):
#   bench/run-qc.sh [SECONDS] [RATE]      (defaults 300 s at 1000 events/s; BENCH_QC_OPEN_TASKS preloaded, default 100000)
# Builds the hub jar if it is missing or older than the sources, builds the bench, then runs the bench JVM, which starts
# the hub as a child process on database bench_qc, preloads the open tasks, offers the clinical events, prints the table
# and writes the qc section of bench/RESULTS.md (the rest of the file is kept). Tuning knobs: BENCH_QC_* (README).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="$BENCH_DIR/work/qc"
COMMAND="$({ env | grep -E '^BENCH_[A-Z_]+=' || true; } | sort | sed -E "s/^([A-Z_]+)=(.*)$/\1='\2'/" | tr '\n' ' ')bench/run-qc.sh $*"
cd "$ROOT"

. "$BENCH_DIR/common.sh"
ensure_postgres

ensure_hub_jar
echo "Building the bench ..."
./mvnw -B -ntp -q -f bench/pom.xml package

# A fresh work folder (hub log, flow and rule files) under bench/work (git-ignored); the delivery benchmark's files
# next to it are not touched.
rm -rf "$WORK"
mkdir -p "$WORK"

# The bench JVM stops the hub itself (shutdown hook). If the bench JVM was killed outright, stop the hub it recorded,
# by pid, only if it is still ours.
cleanup() {
  f="$WORK/hub.pid"
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$WORK"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 45); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

java ${BENCH_JAVA_OPTS:--Xmx1g} -cp "bench/target/classes:bench/target/lib/*" org.hospitalhub.bench.QcBench "$@" \
  --root "$ROOT" --work "$WORK" --results "$BENCH_DIR/RESULTS.md" --command "$COMMAND"
