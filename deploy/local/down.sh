#!/usr/bin/env bash
# make down: stops everything make up started, and checks nothing of ours is left running.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
"$here/services.sh" stop
"$here/kafka.sh" stop
"$here/postgres.sh" stop
left="$(pgrep -af "$ROOT/.venv/bin/xinfang-|$ROOT/deploy/local/(mail_sink|sms_gateway).py|$KAFKA_HOME/libs|$PG_DATA" || true)"
[[ -z "$left" ]] || die "still running after make down:
$left"
say "everything stopped"
