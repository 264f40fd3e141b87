#!/usr/bin/env bash
# Kafka and PostgreSQL only (what the integration tests need): install, start, topics, credentials.
# Reuses whatever is already running. Usage: infra.sh [up|down]
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
case "${1:-up}" in
  up)
    "$here/install.sh"
    "$here/postgres.sh" start
    "$here/kafka.sh" start
    (cd "$ROOT" && uv run --frozen python deploy/local/topics.py)
    "$here/credentials.sh"
    ;;
  down)
    "$here/kafka.sh" stop
    "$here/postgres.sh" stop
    ;;
  *) die "usage: infra.sh up|down" ;;
esac
