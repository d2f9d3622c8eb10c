#!/usr/bin/env bash
# The benchmark of issue item 10 (see bench/README.md):  bench/run.sh [N]   (N = number of events, default 1000000)
# Builds the hub jar if it is missing or older than the sources, builds the bench, then runs the bench JVM, which starts
# its own Kafka broker and the hub as child processes, measures hub, raw baseline and synchronous baseline on the same
# data, prints the table and writes bench/RESULTS.md. Tuning knobs: BENCH_* environment variables (README).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="$BENCH_DIR/work"
N="${1:-1000000}"
# the exact command, with the BENCH_* settings it ran with
COMMAND="$({ env | grep -E '^BENCH_[A-Z_]+=' || true; } | sort | sed -E "s/^([A-Z_]+)=(.*)$/\1='\2'/" | tr '\n' ' ')bench/run.sh $*"
cd "$ROOT"

. "$BENCH_DIR/common.sh"
ensure_postgres
# The hub and the raw baseline each write about 800 MB of WAL (load and delay phases): the server gets old segments to
# reuse, as one that has been running at this rate has (common.sh, prepare_wal), and the bench takes a checkpoint before
# each system's phase, so that each starts from the same state (RESULTS.md lists both per system).
prepare_wal 192

ensure_hub_jar
echo "Building the bench ..."
./mvnw -B -ntp -q -f bench/pom.xml package

# A fresh work folder (Kafka data, hub log, flow file); git-ignored.
rm -rf "$WORK"
mkdir -p "$WORK"

# The bench JVM stops its children itself (shutdown hook; the broker also exits when the bench JVM's pipe closes).
# If the bench JVM was killed outright, stop the children it recorded, by pid, only if they are still ours.
cleanup() {
  for f in "$WORK"/hub.pid "$WORK"/broker.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$WORK"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 45); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT

java ${BENCH_JAVA_OPTS:--Xmx1g} -cp "bench/target/classes:bench/target/lib/*" org.hospitalhub.bench.Bench "$N" \
  --root "$ROOT" --work "$WORK" --results "$BENCH_DIR/RESULTS.md" --command "$COMMAND"
