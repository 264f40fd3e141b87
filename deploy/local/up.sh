#!/usr/bin/env bash
# make up: everything from a fresh clone to five healthy services. Safe to re-run.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
started=$SECONDS
"$here/infra.sh" up
"$here/services.sh" migrate
"$here/services.sh" start
load_credentials
cat <<INFO

  xinfang is up ($((SECONDS - started)) s)
    Kafka        127.0.0.1:$KAFKA_PORT       (kcat -b 127.0.0.1:$KAFKA_PORT -L)
    PostgreSQL   127.0.0.1:$PG_PORT       database xinfang, one schema per service
    intake       http://127.0.0.1:8001   /health /metrics /docs
    routing      http://127.0.0.1:8002
    supervision  http://127.0.0.1:8003   clock: ${SUPERVISION_CLOCK:-real}$( [[ "${SUPERVISION_CLOCK:-}" == controlled ]] && echo ' (POST /v1/admin/clock/advance)')
    notify       http://127.0.0.1:8004   mail it sent: .local/mail/*.eml, SMS: .local/sms/*.json
    SMTP server  127.0.0.1:$SMTP_PORT       SMS gateway http://127.0.0.1:$SMS_PORT
    stats        http://127.0.0.1:8005
    credentials  $LOCAL/credentials.env
    logs         make logs   (files in $LOGS)
    stop         make down

INFO
