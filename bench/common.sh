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

# PostgreSQL writes WAL into 16 MB segment files. A server that has run at a given write rate for a checkpoint cycle
# reuses old segments (renamed at each checkpoint, up to min_wal_size); a fresh one, or one whose min_wal_size is
# small, creates and zero-fills a new file whenever the current one is full, and every commit of every database waits
# meanwhile: about 50 ms on this machine, every 0.8 s at the relay bench's 20 MB/s of WAL (bench/README, "WAL segments").
# This brings the server to the state of one that has been running: a checkpoint, so that the segments the last run
# filled are recycled, then, if fewer than SEGMENTS are ready ahead of the write position, SEGMENTS WAL switches (after
# a one-row insert each; they use the ready segments first, then create new ones) and a second checkpoint, which
# recycles them as far as min_wal_size allows (on this machine 208-255 of 256 with 4GB). Needs a superuser (the bench's postgres).
prepare_wal() {
  local want="$1" psql_="psql -h 127.0.0.1 -U postgres -X -q -At -v ON_ERROR_STOP=1 -d postgres" ready minmb
  local q="SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}\$' AND name > pg_walfile_name(pg_current_wal_lsn())"
  minmb="$($psql_ -c "SELECT setting FROM pg_settings WHERE name = 'min_wal_size'")"
  if [ "$minmb" -lt $((want * 16)) ]; then
    echo "Note: PostgreSQL min_wal_size is ${minmb} MB: checkpoints keep at most that much WAL for reuse; the recorded runs used" \
      "$((want * 16)) MB (ALTER SYSTEM SET min_wal_size = '$((want * 16))MB'; SELECT pg_reload_conf();)"
  fi
  $psql_ -c "CHECKPOINT"
  ready="$($psql_ -c "$q")"
  if [ "$ready" -lt "$want" ]; then
    echo "PostgreSQL has ${ready} WAL segments ready for reuse; making it ${want} (16 MB each) ..."
    $psql_ -c "CREATE TABLE IF NOT EXISTS hub_bench_wal_fill (n int)" \
      -c "DO \$\$ BEGIN FOR i IN 1..${want} LOOP INSERT INTO hub_bench_wal_fill VALUES (i); PERFORM pg_switch_wal(); END LOOP; END \$\$" \
      -c "DROP TABLE hub_bench_wal_fill" -c "CHECKPOINT"
    ready="$($psql_ -c "$q")"
  fi
  echo "PostgreSQL WAL segments ready for reuse: ${ready}"
}
