#!/usr/bin/env bash
# Writes .local/credentials.env (git-ignored) once: dev API keys, the database DSN, the personal-data keys.
# Values already there are kept, so a second run changes nothing.
source "$(dirname "$0")/lib.sh"
FILE="$LOCAL/credentials.env"
touch "$FILE" && chmod 600 "$FILE"

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ensure() { grep -q "^$1=" "$FILE" || echo "$1=$2" >>"$FILE"; }
replace() { grep -v "^$1=" "$FILE" >"$FILE.tmp" || true; echo "$1=$2" >>"$FILE.tmp"; mv "$FILE.tmp" "$FILE"; }

source "$LOCAL/postgres/password.env"
replace DATABASE_URL "postgresql://xinfang:$DATABASE_PASSWORD@127.0.0.1:$PG_PORT/xinfang"
ensure ENVIRONMENT local
ensure KAFKA_BOOTSTRAP_SERVERS "127.0.0.1:$KAFKA_PORT"
ensure CHANNEL_API_KEY "$(secret)"
ensure OPERATOR_API_KEY "$(secret)"
ensure PERSONAL_DATA_KEY "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
ensure PERSONAL_DATA_HASH_KEY "$(secret)"
ensure SMS_ACCESS_KEY "$(secret)"
ensure SMS_RECEIPT_TOKEN "$(secret)"
units="$(cd "$ROOT" && uv run --frozen python -c 'from xinfang_shared.contracts.reference import UNITS; print(" ".join(UNITS))')"
for unit in $units; do ensure "UNIT_API_KEY_${unit//-/_}" "$(secret)"; done
