#!/usr/bin/env bash
# Scale-out, on a running `make up` stack (stack.sh calls it before its `make down`): `make up ROUTING=2` adds
# routing-2 on 8102, both instances healthy and in the consumer group xinfang-routing with the partitions of
# matters.registered.v2 split between them (Kafka's DescribeGroups: consumer_group.py); `make status` lists both;
# then `make up` (ROUTING=1) stops routing-2 and routing alone holds every partition again. Prints the timings.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh
GROUP=xinfang-routing
TOPIC=matters.registered.v2

health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health"; }

t0=$SECONDS
make up ROUTING=2 >"$LOGS/smoke-scale-up.log" 2>&1 || { cat "$LOGS/smoke-scale-up.log"; die "make up ROUTING=2 failed"; }
up_s=$((SECONDS - t0))
for port in 8002 8102; do
  [[ "$(health "$port")" == 200 ]] || die "routing on $port: /health answered $(health "$port")"
done
grep -q "2 instances in consumer group $GROUP: routing :8002, routing-2 :8102" "$LOGS/smoke-scale-up.log" \
  || die "make up ROUTING=2 did not print the two instances; see $LOGS/smoke-scale-up.log"
[[ -f "$LOGS/routing-2.log" && -f "$RUN/routing-2.pid" ]] || die "no .local/log/routing-2.log or .local/run/routing-2.pid"
status="$(make status 2>&1 || true)"
grep -qE '^routing: running \(pid [0-9]+\) http://127.0.0.1:8002$' <<<"$status" || die "make status: $status"
grep -qE '^routing-2: running \(pid [0-9]+\) http://127.0.0.1:8102$' <<<"$status" || die "make status: $status"
uv run --frozen python tests/smoke/consumer_group.py "$GROUP" "$TOPIC" 2 --timeout 60 || die "not split in two"
say "make up ROUTING=2: routing on 8002 and 8102 healthy, one consumer group, $TOPIC split between them"

t1=$SECONDS
make up >"$LOGS/smoke-scale-down.log" 2>&1 || { cat "$LOGS/smoke-scale-down.log"; die "make up (ROUTING=1) failed"; }
down_s=$((SECONDS - t1))
grep -q "routing-2 (:8102) stopped" "$LOGS/smoke-scale-down.log" || die "make up did not stop routing-2"
[[ ! -f "$RUN/routing-2.pid" ]] || die "routing-2.pid left behind"
! port_open 8102 || die "something still listens on 8102"
[[ "$(health 8002)" == 200 ]] || die "routing on 8002 unhealthy after scaling in"
status="$(make status 2>&1 || true)"
! grep -q '^routing-2' <<<"$status" || die "make status still lists routing-2: $status"
uv run --frozen python tests/smoke/consumer_group.py "$GROUP" "$TOPIC" 1 --timeout 60 || die "routing does not hold every partition"
say "scale: make up ROUTING=2 ${up_s}s, make up (back to 1) ${down_s}s stopped routing-2"
