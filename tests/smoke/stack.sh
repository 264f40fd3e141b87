#!/usr/bin/env bash
# The README's promise, checked with tools that are not ours: `make up` on this clone gives a Kafka broker
# with every registry topic at its partitions (kcat -L), one PostgreSQL schema per service, five healthy
# services; a second `make up` is a no-op; scaling out and back in works (scale.sh: `make up ROUTING=2`, then
# `make up`); `make down` leaves nothing running. Prints the timings.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh

t0=$SECONDS
make up >"$LOGS/smoke-up-1.log" 2>&1 || { cat "$LOGS/smoke-up-1.log"; die "make up failed"; }
first=$((SECONDS - t0))
grep -E "Kafka started in" "$LOGS/smoke-up-1.log" || true

expected="$(uv run --frozen python -c '
from xinfang_shared.contracts.topics import topics_to_create
for name, spec in sorted(topics_to_create().items()): print(name, spec.partitions)')"
actual="$(kcat -b 127.0.0.1:9092 -L | sed -nE 's/^  topic "([^"]+)" with ([0-9]+) partitions:$/\1 \2/p' \
  | grep -v '^__' | sort)"
[[ "$expected" == "$actual" ]] || die "kcat -L does not show the registry's topics and partitions:
$(diff <(echo "$expected") <(echo "$actual") || true)"
say "kcat -L: $(echo "$actual" | wc -l) topics with the registry's partitions"

load_credentials
[[ "$(stat -c %a "$LOCAL/credentials.env")" == 600 ]] || die "credentials.env is not mode 0600"
schemas="$(psql "$DATABASE_URL" -qtAc "SELECT string_agg(nspname || ':' || pg_get_userbyid(nspowner), ' ' ORDER BY
  nspname) FROM pg_namespace WHERE nspname IN ('intake','routing','supervision','notify','stats')")"
[[ "$schemas" == "intake:xinfang_intake notify:xinfang_notify routing:xinfang_routing stats:xinfang_stats supervision:xinfang_supervision" ]] \
  || die "each service's schema owned by its own role: got '$schemas'"
# Each service talks to PostgreSQL as its own role, and to Kafka as its own principal on the SCRAM listener.
roles="$(psql "$DATABASE_URL" -qtAc "SELECT string_agg(DISTINCT application_name || ':' || usename, ' ')
  FROM pg_stat_activity WHERE application_name LIKE 'xinfang-%'")"
for svc in "${SERVICES[@]}"; do
  [[ " $roles " == *" xinfang-$svc:xinfang_$svc "* ]] || die "$svc does not connect as xinfang_$svc: $roles"
done
for svc in "${SERVICES[@]}"; do
  tr '\0' '\n' <"/proc/$(cat "$RUN/$svc.pid")/environ" | grep -qx "KAFKA_SASL_USERNAME=service-$svc" \
    || die "$svc does not run as the Kafka principal service-$svc"
done
say "each service is its own database role and its own Kafka principal; credentials.env is 0600"
for svc in "${SERVICES[@]}"; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${SERVICE_PORTS[$svc]}/health")"
  [[ "$code" == 200 ]] || die "$svc /health answered $code"
done
say "five services answer /health 200; one schema per service"

t1=$SECONDS
make up >"$LOGS/smoke-up-2.log" 2>&1 || die "second make up failed"
second=$((SECONDS - t1))

bash tests/smoke/scale.sh

make down >"$LOGS/smoke-down.log" 2>&1 || { cat "$LOGS/smoke-down.log"; die "make down failed"; }
left="$(pgrep -af "$ROOT/.venv/bin/xinfang-|$KAFKA_HOME/libs|$PG_DATA" || true)"
[[ -z "$left" ]] || die "left running after make down: $left"
say "smoke: make up ${first}s (this run), second make up ${second}s, make down left nothing running"
