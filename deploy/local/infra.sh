#!/usr/bin/env bash
# Kafka and PostgreSQL only (what the integration tests need): install, start, credentials, one database role per
# service, topics, and the broker's SCRAM users and ACLs.
# Reuses whatever is already running. Usage: infra.sh [up|down]
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
case "${1:-up}" in
  up)
    "$here/install.sh"
    "$here/postgres.sh" start
    "$here/kafka.sh" start
    "$here/credentials.sh"
    load_credentials
    (cd "$ROOT" && uv run --frozen python deploy/local/database.py)
    (cd "$ROOT" && uv run --frozen python deploy/local/topics.py)
    (cd "$ROOT" && uv run --frozen python deploy/local/kafka_security.py)
    ;;
  down)
    "$here/kafka.sh" stop
    "$here/postgres.sh" stop
    ;;
  *) die "usage: infra.sh up|down" ;;
esac
