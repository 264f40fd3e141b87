#!/usr/bin/env bash
# PostgreSQL from Debian's packages, as the postgres user, on a data directory under .local/postgres.
# Creates the xinfang role (the administrator: it makes the database, each service's role and schema, and the tests'
# databases) and the database once. Usage: postgres.sh start|stop|status
source "$(dirname "$0")/lib.sh"
PG_USER=postgres

as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

start() {
  [[ -n "$PG_BIN" ]] || die "PostgreSQL is not installed: run deploy/local/install.sh"
  mkdir -p "$LOCAL/postgres" "$PG_SOCKET"
  if [[ $EUID -eq 0 ]]; then
    chown "$PG_USER" "$LOCAL/postgres" "$PG_SOCKET"
    # The server runs as postgres, which must be able to walk down to its data directory (a clone
    # under a private temporary folder is not traversable by other users).
    local dir="$LOCAL"
    while [[ "$dir" != / ]]; do
      runuser -u "$PG_USER" -- test -x "$dir" || { chmod o+x "$dir"; say "made $dir traversable for postgres"; }
      dir="$(dirname "$dir")"
    done
  fi
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "initialising a PostgreSQL cluster in $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 || die "initdb failed; see $LOGS/initdb.log"
    cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET'
max_connections = 300
shared_buffers = 256MB
synchronous_commit = on
fsync = on
CONF
  fi
  # pg_stat_statements: what each statement costs (`make bench` prints the statements per matter). Preloaded at
  # start, so a cluster initialised before this line loads it at its next start.
  if ! grep -q "^shared_preload_libraries" "$PG_DATA/postgresql.conf"; then
    printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.max = 5000\n" \
      >>"$PG_DATA/postgresql.conf"
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    say "PostgreSQL already running"
  else
    port_open "$PG_PORT" && die "port $PG_PORT is taken by a process we did not start (a system PostgreSQL?)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$LOCAL/postgres/server.log" -w -t 60 start >/dev/null \
      || die "PostgreSQL did not start; see $LOCAL/postgres/server.log"
    say "PostgreSQL started at 127.0.0.1:$PG_PORT"
  fi
  ensure_database
}

ensure_database() {
  local password
  password="$(grep -E '^DATABASE_PASSWORD=' "$LOCAL/postgres/password.env" 2>/dev/null | cut -d= -f2- || true)"
  if [[ -z "$password" ]]; then
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "DATABASE_PASSWORD=$password" >"$LOCAL/postgres/password.env"
  fi
  local psql=(as_pg "$PG_BIN/psql" -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='xinfang'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE ROLE xinfang LOGIN CREATEDB CREATEROLE PASSWORD '$password'"
  else
    "${psql[@]}" -c "ALTER ROLE xinfang CREATEDB CREATEROLE PASSWORD '$password'" >/dev/null
  fi
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='xinfang'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE xinfang OWNER xinfang"
  fi
  # The view in the xinfang database shows every database's statements (the bench reads its own by dbid);
  # pg_read_all_stats lets the xinfang role see the services' statements too, not only its own.
  if [[ "$("${psql[@]}" -c "SHOW shared_preload_libraries")" == *pg_stat_statements* ]]; then
    "${psql[@]}" -d xinfang -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    "${psql[@]}" -c "GRANT pg_read_all_stats TO xinfang"
  else
    say "PostgreSQL runs without pg_stat_statements until it restarts (make down && make up)"
  fi
}

case "${1:-status}" in
  start) start ;;
  stop)
    if [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
    fi ;;
  status) as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 && echo "postgres: running" || { echo "postgres: stopped"; exit 3; } ;;
  # A crash and recovery, for `make chaos`: every backend killed at once (no checkpoint), then started again.
  crash-restart)
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null || true
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$LOCAL/postgres/server.log" -w -t 60 start >/dev/null \
      || die "PostgreSQL did not start again; see $LOCAL/postgres/server.log" ;;
  *) die "usage: postgres.sh start|stop|status|crash-restart" ;;
esac
