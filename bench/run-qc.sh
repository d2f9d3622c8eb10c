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

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 (see scripts/test.sh)"; exit 1; }

JAR=target/quarkus-app/quarkus-run.jar
if [ ! -f "$JAR" ] || [ -n "$(find src/main pom.xml -newer "$JAR" -print -quit)" ]; then
  echo "Building the hub jar (./mvnw -q package -DskipTests) ..."
  ./mvnw -B -ntp -q package -DskipTests
fi
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
