#!/usr/bin/env bash
# make up: everything from a fresh clone to five healthy services. Safe to re-run.
# `make up ROUTING=3 NOTIFY=2` (INTAKE, ROUTING, SUPERVISION, NOTIFY, STATS; default 1) runs that many instances
# of a service, and a later `make up` with a smaller number stops the extra ones (services.sh start).
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
started=$SECONDS
declare -A count=()
for svc in "${SERVICES[@]}"; do count[$svc]="$(instance_count "$svc")"; done # a bad number fails before anything

# partition_warnings: one line per service with more instances than one of its input topics has partitions.
# Kafka gives each partition to one member of the group, so the extra instances get none of that topic and idle
# on it. The registry (shared/src/xinfang_shared/contracts/topics.py) fixes the partition counts; not changed here.
partition_warnings() {
  local -a asked=()
  for svc in "${SERVICES[@]}"; do
    if ((count[$svc] > 1)); then asked+=("$svc=${count[$svc]}"); fi
  done
  ((${#asked[@]} > 0)) || return 0
  "$ROOT/.venv/bin/python" - "${asked[@]}" <<'PY'
import sys

from xinfang_shared.contracts.topics import CONTRACT_TOPICS

for arg in sys.argv[1:]:
    service, _, asked = arg.partition("=")
    n = int(asked)
    short: dict[int, list[str]] = {}
    for topic in CONTRACT_TOPICS:
        if service in topic.consumers and n > topic.partitions:
            short.setdefault(topic.partitions, []).append(topic.name)
    if short:
        why = "; ".join(
            f"{', '.join(names)} {'has' if len(names) == 1 else 'have'} {p} partitions{'' if len(names) == 1 else ' each'}"
            f" ({n - p} instance{'' if n - p == 1 else 's'} idle on {'it' if len(names) == 1 else 'them'})"
            for p, names in sorted(short.items())
        )
        print(
            f"{service}: {n} instances, but {why}: Kafka gives each partition to one instance of the group"
            " (the registry's partition counts are not changed)"
        )
PY
}

# instances_line SVC: the instances beyond the first, for the summary (nothing when there is one)
instances_line() {
  local svc="$1" k out=""
  ((count[$svc] > 1)) || return 0
  for ((k = 1; k <= count[$svc]; k++)); do
    out+="${out:+, }$(instance_name "$svc" "$k") :$(instance_port "$svc" "$k")"
  done
  printf '\n                 %s instances in consumer group %s: %s' \
    "${count[$svc]}" "${KAFKA_GROUP_ID:-xinfang-$svc}" "$out"
}

"$here/infra.sh" up
warnings="$(partition_warnings)" || warn "could not read the topics' partitions from the registry"
while IFS= read -r line; do [[ -z "$line" ]] || warn "$line"; done <<<"$warnings"
"$here/services.sh" migrate
"$here/services.sh" start
load_credentials
cat <<INFO

  xinfang is up ($((SECONDS - started)) s)
    Kafka        127.0.0.1:$KAFKA_PORT       (kcat -b 127.0.0.1:$KAFKA_PORT -L)
    PostgreSQL   127.0.0.1:$PG_PORT       database xinfang, one schema per service
    intake       http://127.0.0.1:8001   /health /metrics /docs$(instances_line intake)
    routing      http://127.0.0.1:8002$(instances_line routing)
    supervision  http://127.0.0.1:8003   clock: ${SUPERVISION_CLOCK:-real}$( [[ "${SUPERVISION_CLOCK:-}" == controlled ]] && echo ' (POST /v1/admin/clock/advance)')$(instances_line supervision)
    notify       http://127.0.0.1:8004   mail it sent: .local/mail/*.eml, SMS: .local/sms/*.json$(instances_line notify)
    SMTP server  127.0.0.1:$SMTP_PORT       SMS gateway http://127.0.0.1:$SMS_PORT
    stats        http://127.0.0.1:8005$(instances_line stats)
    console      http://127.0.0.1:$CONSOLE_PORT   staff workbench (accounts STAFF_USER_* in credentials), /track for petitioners
    credentials  $LOCAL/credentials.env
    logs         make logs   (files in $LOGS)
    status       make status (every instance, with its port)
    stop         make down
INFO
[[ -z "$warnings" ]] || printf '    warning      %s\n' "${warnings//$'\n'/$'\n'                 }"
echo
