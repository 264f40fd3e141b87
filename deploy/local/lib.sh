# Shared by the local-stack scripts: paths, ports, and small helpers. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
LOGS="$LOCAL/log"
mkdir -p "$RUN" "$LOGS"

export UV_PYTHON_DOWNLOADS=never
KAFKA_HOME="$LOCAL/kafka"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
PG_DATA="$LOCAL/postgres/data"
PG_SOCKET="$LOCAL/postgres/run"
PG_PORT="${PG_PORT:-5432}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
SERVICES=(intake routing supervision notify stats)
declare -A SERVICE_PORTS=([intake]=8001 [routing]=8002 [supervision]=8003 [notify]=8004 [stats]=8005)
SMTP_PORT=1025
SMS_PORT=8010

say() { printf '\033[1m[xinfang]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[xinfang] %s\033[0m\n' "$*" >&2; exit 1; }

# port_open PORT: true when something listens on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE: true when FILE names a running process
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid FILE NAME: TERM the process group, wait, then KILL; removes FILE
stop_pid() {
  local file="$1" name="$2" pid
  if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
  pid="$(cat "$file")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop in 30 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "$name stopped"
}

load_credentials() {
  if [[ -f "$LOCAL/credentials.env" ]]; then
    set -a
    # shellcheck disable=SC1091
    source "$LOCAL/credentials.env"
    set +a
  fi
}
