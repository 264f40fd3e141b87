#!/usr/bin/env bash
# Writes .local/credentials.env (git-ignored, mode 0600) once: dev API keys, the database DSNs (an administrator's,
# and one per service for its own role), the personal-data keys, and a Kafka password per principal. Values
# already there are kept, so a second run changes nothing. database.py and kafka_security.py apply them.
source "$(dirname "$0")/lib.sh"
FILE="$LOCAL/credentials.env"
umask 077 # the file and its temporary copies are the owner's alone
touch "$FILE" && chmod 600 "$FILE"

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ensure() { grep -q "^$1=" "$FILE" || echo "$1=$2" >>"$FILE"; }
replace() { grep -v "^$1=" "$FILE" >"$FILE.tmp" || true; echo "$1=$2" >>"$FILE.tmp"; mv "$FILE.tmp" "$FILE"; }

source "$LOCAL/postgres/password.env"
replace DATABASE_URL "postgresql://xinfang:$DATABASE_PASSWORD@127.0.0.1:$PG_PORT/xinfang"
for svc in "${SERVICES[@]}" console; do
  ensure "DATABASE_URL_${svc^^}" "postgresql://xinfang_$svc:$(secret)@127.0.0.1:$PG_PORT/xinfang"
done
ensure ENVIRONMENT local
ensure KAFKA_BOOTSTRAP_SERVERS "127.0.0.1:$KAFKA_PORT"
ensure CHANNEL_API_KEY "$(secret)"
# The console's own channel key (system console, the visit channel): reception registers walk-in visits with it,
# and intake believes the person it names from it alone (services.sh migrate gives it to intake).
ensure CONSOLE_CHANNEL_KEY "$(secret)"
ensure OPERATOR_API_KEY "$(secret)"
ensure CONSOLE_API_KEY "$(secret)"
ensure SESSION_SECRET "$(secret)"
ensure PERSONAL_DATA_KEY "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
ensure PERSONAL_DATA_TRANSPORT_KEY "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
ensure PERSONAL_DATA_HASH_KEY "$(secret)"
ensure SMS_ACCESS_KEY "$(secret)"
ensure SMS_RECEIPT_TOKEN "$(secret)"
names="$(cd "$ROOT" && uv run --frozen python -c '
from xinfang_shared.contracts.acls import principals
from xinfang_shared.contracts.reference import UNITS
from xinfang_shared.contracts.reference import Office
print(" ".join(UNITS)); print(" ".join(principals())); print(" ".join(o.value for o in Office))')"
units="$(sed -n 1p <<<"$names")"
# The console's dev staff: a clerk and a head per office, and one leader (xinfang-console accounts ensure-dev).
for office in $(sed -n 3p <<<"$names"); do
  for role in clerk head; do
    ensure "STAFF_USER_${office//-/_}_$role" "$office.$role"
    ensure "STAFF_PASSWORD_${office//-/_}_$role" "$(secret)"
  done
done
ensure STAFF_USER_leader leader
ensure STAFF_PASSWORD_leader "$(secret)"
for unit in $units; do ensure "UNIT_API_KEY_${unit//-/_}" "$(secret)"; done
for principal in $(sed -n 2p <<<"$names"); do ensure "KAFKA_PASSWORD_${principal//-/_}" "$(secret)"; done
chmod 600 "$FILE"
