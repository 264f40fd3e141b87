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
KAFKA_SASL_PORT=9094
PG_DATA="$LOCAL/postgres/data"
PG_SOCKET="$LOCAL/postgres/run"
PG_PORT="${PG_PORT:-5432}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
SERVICES=(intake routing supervision notify stats)
declare -A SERVICE_PORTS=([intake]=8001 [routing]=8002 [supervision]=8003 [notify]=8004 [stats]=8005)
# The console (staff workbench, petitioners' page): no Kafka, one instance, its own database role.
CONSOLE_PORT=8006
SMTP_PORT=1025
SMS_PORT=8010

say() { printf '\033[1m[xinfang]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[xinfang] %s\033[0m\n' "$*" >&2; exit 1; }
warn() { printf '\033[33m[xinfang] warning: %s\033[0m\n' "$*" >&2; }

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

# Scale-out (`make up ROUTING=3 NOTIFY=2`; variables INTAKE ROUTING SUPERVISION NOTIFY STATS, default 1):
# instance k of a service listens on its contract port + 100*(k-1) (routing 8002, 8102, 8202; nothing else of
# the stack is on those: the SMS gateway 8010, SMTP 1025, Kafka 9092/9093/9094, PostgreSQL 5432) and is named <svc>-k
# for its log and pid files (.local/log/routing-2.log, .local/run/routing-2.pid); instance 1 keeps the bare name.
# Every instance of a service is in its consumer group (default xinfang-<service>), so Kafka splits the partitions.
INSTANCE_PORT_STEP=100
MAX_INSTANCES=20

# instance_count SVC: how many instances `make up` runs of SVC (its upper-case variable; empty or unset: 1)
instance_count() {
  local var="${1^^}" n
  n="${!var:-1}"
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && ((n <= MAX_INSTANCES)) || die "$var=$n: want a whole number from 1 to $MAX_INSTANCES"
  echo "$n"
}

# instance_name SVC K: routing (K = 1), routing-2, routing-3, ...
instance_name() { if (($2 == 1)); then echo "$1"; else echo "$1-$2"; fi; }

# instance_port SVC K: the contract port for K = 1, then + INSTANCE_PORT_STEP per instance
instance_port() { echo $((${SERVICE_PORTS[$1]} + INSTANCE_PORT_STEP * ($2 - 1))); }

# instance_numbers SVC: the instance numbers that have a pid file, ascending (one a line)
instance_numbers() {
  local svc="$1" file k
  local -a found=()
  if [[ -f "$RUN/$svc.pid" ]]; then found+=(1); fi
  for file in "$RUN/$svc"-*.pid; do
    k="${file##*/"$svc"-}"
    k="${k%.pid}"
    if [[ -f "$file" && "$k" =~ ^[1-9][0-9]*$ ]]; then found+=("$k"); fi
  done
  if ((${#found[@]} > 0)); then printf '%s\n' "${found[@]}" | sort -n; fi
}

# go_tool NAME VERSION PACKAGE BUILT [CGO]: .local/bin/NAME, built once per VERSION from the Go module proxy
# (`go install PACKAGE@VERSION`, whose binary is BUILT); Go from PATH, /usr/local/go, or Debian's golang-go.
go_tool() {
  local name="$1" version="$2" package="$3" built="$4" cgo="${5:-}"
  local bin="$LOCAL/bin/$name" stamp="$LOCAL/bin/.$name-$version" go tmp
  [[ -x "$bin" && -f "$stamp" ]] && return 0
  go="$(command -v go || true)"
  [[ -n "$go" || ! -x /usr/local/go/bin/go ]] || go=/usr/local/go/bin/go
  if [[ -z "$go" ]]; then
    [[ $EUID -eq 0 ]] || die "$name needs Go to build: run as root once (installs golang-go), or install Go"
    say "installing golang-go from Debian's packages (to build $name)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
    go="$(command -v go)"
  fi
  say "building $name $version from the Go module proxy"
  mkdir -p "$LOCAL/bin"
  tmp="$(mktemp -d)"
  # No HOME (so no default caches): keep Go's module and build caches under .local/go (writable: rm -rf works).
  if [[ -z "${HOME:-}" ]]; then export GOPATH="$LOCAL/go" GOCACHE="$LOCAL/go/cache"; fi
  if ! env ${cgo:+CGO_ENABLED=$cgo} GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" \
    "$go" install "$package@$version" >"$LOGS/$name-build.log" 2>&1; then
    rm -rf "$tmp"
    die "go install of $name $version failed; see $LOGS/$name-build.log"
  fi
  mv "$tmp/$built" "$bin"
  rm -rf "$tmp"
  rm -f "$LOCAL/bin/.$name-"*
  touch "$stamp"
  say "$name $version in $bin"
}
