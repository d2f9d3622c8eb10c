#!/usr/bin/env bash
# The test command: makes sure the real local servers the tests use are up, then runs the Maven tests.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi
if ! pg_up; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started."
  echo "Install it (Debian: apt-get install postgresql) with trust authentication for local TCP, then run this again."
  exit 1
fi

rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "Starting RabbitMQ..."
    # a node left running with its app stopped (e.g. an interrupted outage test) only needs start_app
    timeout 30 rabbitmqctl -q start_app >/dev/null 2>&1 || rabbitmq-server -detached || true
    for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
  fi
fi
if ! rabbit_up; then
  echo "RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started."
  echo "Install it (Debian: apt-get install rabbitmq-server; the default guest/guest user works from localhost), then run this again."
  exit 1
fi

# The task board test (BoardPageTest) drives Debian's chromium through playwright-core (src/test/board, versions
# pinned by its package-lock.json); with these installed here, a missing tool fails that test instead of skipping it.
if [ ! -x /usr/bin/chromium ]; then
  echo "Installing chromium for the task board test..."
  if [ "$(id -u)" = 0 ]; then apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
  else sudo apt-get install -y chromium; fi
fi
if [ ! -d src/test/board/node_modules/playwright-core ]; then
  echo "Installing playwright-core for the task board test..."
  npm ci --prefix src/test/board --no-audit --no-fund
fi

# verify = the unit and Quarkus tests, the packaged jar, then the integration tests that kill and restart it
./mvnw -B -ntp verify -Dhub.board-test.required=true "$@"
