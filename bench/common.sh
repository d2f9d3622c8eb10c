# Shared by the bench/run*.sh scripts (sourced, from the repository root).

# PostgreSQL on 127.0.0.1:5432, starting a stopped Debian cluster if there is one.
ensure_postgres() {
  pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
  if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      echo "Starting PostgreSQL..."
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
      for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
  fi
  pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 (see scripts/test.sh)"; exit 1; }
}

# The packaged hub, rebuilt when it is missing or older than the sources.
ensure_hub_jar() {
  local jar=target/quarkus-app/quarkus-run.jar
  if [ ! -f "$jar" ] || [ -n "$(find src/main pom.xml -newer "$jar" -print -quit)" ]; then
    echo "Building the hub jar (./mvnw -q package -DskipTests) ..."
    ./mvnw -B -ntp -q package -DskipTests
  fi
}

# Stops the child processes a benchmark recorded as <work>/*.pid, only if they are still its own (their command line
# names the work folder): the bench JVM stops them itself, this is for a bench JVM that was killed outright.
stop_recorded() {
  local work="$1" f pid
  for f in "$work"/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$work"; then
      kill "$pid" 2>/dev/null || true
    fi
  done
}
