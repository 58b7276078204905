#!/usr/bin/env bash
# Throwaway database servers for the tests, on loopback only.
#
#   source scripts/services.sh; services_up; trap services_down EXIT   (what scripts/test.sh does)
#   eval "$(scripts/services.sh start)"; cargo test; scripts/services.sh stop   (by hand)
#
# PostgreSQL: a fresh cluster in target/pg (fsync off: it is thrown away), on 127.0.0.1 from port
# 55432 up, with the superuser `gophergate` (password `gophergate`); exports
# GOPHERGATE_TEST_POSTGRES_URL, from which each test creates its own database. A cluster already
# running there (another test run) is reused and left running. When GOPHERGATE_TEST_POSTGRES_URL is
# already set, that server is used and nothing is started. The binaries are Debian's
# (`apt-get install postgresql`, which .ci/run does); PostgreSQL refuses to run as root, so as root
# the cluster belongs to the `postgres` user.

GG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GG_PG_DIR="${GOPHERGATE_PG_DIR:-$GG_ROOT/target/pg}"
GG_PG_STARTED=""

# Newest Debian PostgreSQL first, then whatever is on the PATH.
gg_pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  return 1
}

# Runs a command as the cluster's owner: ourselves, or `postgres` when we are root.
gg_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

gg_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

gg_pg_up() {
  if [ -n "${GOPHERGATE_TEST_POSTGRES_URL:-}" ]; then
    echo "services: PostgreSQL from GOPHERGATE_TEST_POSTGRES_URL (not starting one)" >&2
    return 0
  fi
  local bin
  if ! bin="$(gg_pg_bindir)"; then
    echo "services: PostgreSQL is not installed (apt-get install postgresql); its tests will be skipped" >&2
    return 1
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  local data="$GG_PG_DIR/data" port started_at=$SECONDS
  if [ -f "$GG_PG_DIR/port" ] && gg_as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port="$(cat "$GG_PG_DIR/port")"
    echo "services: reusing the PostgreSQL cluster already running on 127.0.0.1:$port" >&2
  else
    rm -rf "$GG_PG_DIR"
    mkdir -p "$GG_PG_DIR"
    printf 'gophergate\n' >"$GG_PG_DIR/pwfile"
    if [ "$(id -u)" -eq 0 ]; then
      chown -R postgres: "$GG_PG_DIR"
      if ! runuser -u postgres -- test -w "$GG_PG_DIR"; then
        # A parent directory is closed to the postgres user (a checkout under /root, say): the
        # cluster goes to /tmp instead, one per checkout.
        local alt
        alt="/tmp/gophergate-pg-$(printf '%s' "$GG_ROOT" | cksum | cut -d' ' -f1)"
        echo "services: the postgres user cannot reach $GG_PG_DIR; using $alt" >&2
        rm -rf "$GG_PG_DIR" "$alt"
        GG_PG_DIR="$alt"
        data="$GG_PG_DIR/data"
        mkdir -p "$GG_PG_DIR"
        printf 'gophergate\n' >"$GG_PG_DIR/pwfile"
        chown -R postgres: "$GG_PG_DIR"
      fi
    fi
    if ! gg_as_pg "$bin/initdb" -D "$data" -U gophergate --pwfile="$GG_PG_DIR/pwfile" \
      --auth=scram-sha-256 -E UTF8 --no-sync >"$GG_PG_DIR/initdb.log" 2>&1; then
      echo "services: initdb failed; see $GG_PG_DIR/initdb.log" >&2
      return 1
    fi
    port="${GOPHERGATE_PG_PORT:-55432}"
    while ! gg_port_free "$port"; do port=$((port + 1)); done
    # TCP on loopback only, no Unix socket (no directory to own), nothing synced to disk.
    if ! gg_as_pg "$bin/pg_ctl" -D "$data" -l "$GG_PG_DIR/server.log" -w -t 60 -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500" \
      start >/dev/null; then
      echo "services: PostgreSQL did not start; see $GG_PG_DIR/server.log" >&2
      return 1
    fi
    echo "$port" >"$GG_PG_DIR/port"
    GG_PG_STARTED="$bin"
    echo "services: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') started on 127.0.0.1:$port in $((SECONDS - started_at))s" >&2
  fi
  export GOPHERGATE_TEST_POSTGRES_URL="postgres://gophergate:gophergate@127.0.0.1:$port/postgres"
}

gg_pg_down() {
  local bin="${1:-$GG_PG_STARTED}"
  [ -n "$bin" ] || return 0
  gg_as_pg "$bin/pg_ctl" -D "$GG_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  GG_PG_STARTED=""
}

# Redis: one throwaway server in target/redis (no persistence) on 127.0.0.1 from port 56379 up;
# exports GOPHERGATE_TEST_REDIS_URL. Tests keep apart by a `redis.prefix` of their own. When the
# variable is already set, that server is used. Debian's `redis-server` (which .ci/run installs).
GG_REDIS_DIR="${GOPHERGATE_REDIS_DIR:-$GG_ROOT/target/redis}"
GG_REDIS_STARTED=""

gg_redis_up() {
  if [ -n "${GOPHERGATE_TEST_REDIS_URL:-}" ]; then
    echo "services: Redis from GOPHERGATE_TEST_REDIS_URL (not starting one)" >&2
    return 0
  fi
  if ! command -v redis-server >/dev/null; then
    echo "services: Redis is not installed (apt-get install redis-server); its tests will be skipped" >&2
    return 1
  fi
  local port
  mkdir -p "$GG_REDIS_DIR"
  if [ -f "$GG_REDIS_DIR/port" ] && redis-cli -p "$(cat "$GG_REDIS_DIR/port")" ping >/dev/null 2>&1; then
    port="$(cat "$GG_REDIS_DIR/port")"
    echo "services: reusing the Redis server already running on 127.0.0.1:$port" >&2
  else
    port="${GOPHERGATE_REDIS_PORT:-56379}"
    while ! gg_port_free "$port"; do port=$((port + 1)); done
    if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --daemonize yes --dir "$GG_REDIS_DIR" --pidfile "$GG_REDIS_DIR/redis.pid" \
      --logfile "$GG_REDIS_DIR/redis.log"; then
      echo "services: Redis did not start; see $GG_REDIS_DIR/redis.log" >&2
      return 1
    fi
    local i
    for i in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    echo "$port" >"$GG_REDIS_DIR/port"
    GG_REDIS_STARTED=1
    echo "services: Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) started on 127.0.0.1:$port" >&2
  fi
  export GOPHERGATE_TEST_REDIS_URL="redis://127.0.0.1:$port"
}

gg_redis_down() {
  [ -n "$GG_REDIS_STARTED" ] || [ "${1:-}" = force ] || return 0
  [ -f "$GG_REDIS_DIR/port" ] && redis-cli -p "$(cat "$GG_REDIS_DIR/port")" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$GG_REDIS_DIR/port"
  GG_REDIS_STARTED=""
}

# Starts what the tests need; non-zero when a server could not be had.
services_up() {
  local ok=0
  gg_pg_up || ok=1
  gg_redis_up || ok=1
  return $ok
}

# Stops only what services_up started.
services_down() {
  gg_pg_down
  gg_redis_down
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      services_up
      echo "export GOPHERGATE_TEST_POSTGRES_URL='${GOPHERGATE_TEST_POSTGRES_URL:-}'"
      echo "export GOPHERGATE_TEST_REDIS_URL='${GOPHERGATE_TEST_REDIS_URL:-}'"
      ;;
    stop)
      gg_redis_down force
      bin="$(gg_pg_bindir)" || exit 0
      gg_pg_down "$bin"
      ;;
    *)
      echo "usage: scripts/services.sh start|stop" >&2
      exit 2
      ;;
  esac
fi
