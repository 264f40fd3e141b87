#!/usr/bin/env bash
# The five services as background processes (logs in .local/log, pids in .local/run), and before them the
# stand-ins notify sends through: the SMTP server (127.0.0.1:1025, .local/mail/) and the SMS gateway
# (127.0.0.1:8010, .local/sms/); after them the console (127.0.0.1:8006), which calls their HTTP APIs.
# Usage: services.sh start|stop|status|migrate
# `start` runs as many instances of each service as INTAKE, ROUTING, SUPERVISION, NOTIFY, STATS ask (default 1;
# ports, names and consumer group: lib.sh, instance_port) and stops the instances above those numbers.
source "$(dirname "$0")/lib.sh"
load_credentials

# service_env SVC: SERVICE_ENV, the service's own identities as `env` assignments: its database role
# (DATABASE_URL_<SVC>, which can touch only its schema) and its Kafka principal service-<svc> on the SCRAM listener,
# where the ACLs generated from the topic registry decide what it may read and write (so a missing ACL fails here,
# not in production).
service_env() {
  local svc="$1" url password
  url="DATABASE_URL_${svc^^}"
  password="KAFKA_PASSWORD_service_$svc"
  [[ -n "${!url:-}" && -n "${!password:-}" ]] || die "no $url or $password in $LOCAL/credentials.env: run make up"
  SERVICE_ENV=("DATABASE_URL=${!url}" "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_PORT"
    KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT KAFKA_SASL_MECHANISM=SCRAM-SHA-512 "KAFKA_SASL_USERNAME=service-$svc"
    "KAFKA_SASL_PASSWORD=${!password}")
}

migrate() {
  for svc in "${SERVICES[@]}"; do
    service_env "$svc"
    env "${SERVICE_ENV[@]}" "$ROOT/.venv/bin/xinfang-$svc" migrate >>"$LOGS/$svc.log" 2>&1 \
      || die "migrating $svc failed; see $LOGS/$svc.log"
  done
  # The console's channel key, for the visit channel (again the same key at every run: intake replaces a system's key).
  [[ -n "${CONSOLE_CHANNEL_KEY:-}" ]] || die "no CONSOLE_CHANNEL_KEY in $LOCAL/credentials.env: run make up"
  service_env intake
  env "${SERVICE_ENV[@]}" "CHANNEL_KEY=$CONSOLE_CHANNEL_KEY" "$ROOT/.venv/bin/xinfang-intake" keys add --system console \
    --channels visit >>"$LOGS/intake.log" 2>&1 || die "the console's channel key could not be made; see $LOGS/intake.log"
  env "DATABASE_URL=$DATABASE_URL_CONSOLE" "$ROOT/.venv/bin/xinfang-console" migrate >>"$LOGS/console.log" 2>&1 \
    || die "migrating the console failed; see $LOGS/console.log"
  env "DATABASE_URL=$DATABASE_URL_CONSOLE" "$ROOT/.venv/bin/xinfang-console" accounts ensure-dev >>"$LOGS/console.log" 2>&1 \
    || die "the console's dev accounts could not be made; see $LOGS/console.log"
  say "migrations applied (one schema per service, each by its own role)"
}

start_standin() {
  local name="$1" port="$2"; shift 2
  local pidfile="$RUN/$name.pid"
  if pid_alive "$pidfile"; then return 0; fi
  port_open "$port" && die "port $port (for the $name stand-in) is taken by a process we did not start"
  setsid nohup "$ROOT/.venv/bin/python" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 30))
  until port_open "$port"; do
    pid_alive "$pidfile" || die "the $name stand-in exited during start-up; see $LOGS/$name.log"
    ((SECONDS < deadline)) || die "the $name stand-in does not listen on $port after 30 s; see $LOGS/$name.log"
    sleep 0.2
  done
}

# start_instance SVC K: instance K of SVC in the background, on its port (HTTP_PORT), unless it runs already
start_instance() {
  local svc="$1" k="$2" name port pidfile
  name="$(instance_name "$svc" "$k")"
  port="$(instance_port "$svc" "$k")"
  pidfile="$RUN/$name.pid"
  if pid_alive "$pidfile"; then return 0; fi
  port_open "$port" && die "port $port (for $name) is taken by a process we did not start"
  service_env "$svc"
  HTTP_PORT="$port" setsid nohup env "${SERVICE_ENV[@]}" "$ROOT/.venv/bin/xinfang-$svc" serve \
    >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

start() {
  local -A count=()
  local svc k
  for svc in "${SERVICES[@]}"; do count[$svc]="$(instance_count "$svc")"; done
  start_standin mail "$SMTP_PORT" "$ROOT/deploy/local/mail_sink.py" --port "$SMTP_PORT" --dir "$LOCAL/mail"
  start_standin sms "$SMS_PORT" "$ROOT/deploy/local/sms_gateway.py" --port "$SMS_PORT" --dir "$LOCAL/sms" \
    --receipts-url "http://127.0.0.1:${SERVICE_PORTS[notify]}/v1/sms/receipts"
  # Fewer asked than run: the extra instances leave (their partitions go to the others at the next rebalance).
  for svc in "${SERVICES[@]}"; do
    for k in $(instance_numbers "$svc"); do
      ((k > count[$svc])) || continue
      stop_pid "$RUN/$(instance_name "$svc" "$k").pid" "$(instance_name "$svc" "$k") (:$(instance_port "$svc" "$k"))"
    done
  done
  for svc in "${SERVICES[@]}"; do
    for ((k = 1; k <= count[$svc]; k++)); do start_instance "$svc" "$k"; done
  done
  local deadline=$((SECONDS + 120)) name port total=0
  for svc in "${SERVICES[@]}"; do
    for ((k = 1; k <= count[$svc]; k++)); do
      name="$(instance_name "$svc" "$k")"
      port="$(instance_port "$svc" "$k")"
      until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" == 200 ]]; do
        pid_alive "$RUN/$name.pid" || die "$name exited during start-up; see $LOGS/$name.log"
        ((SECONDS < deadline)) || die "$name is not healthy after 120 s; see $LOGS/$name.log"
        sleep 0.25
      done
      total=$((total + 1))
    done
  done
  start_console
  if ((total == ${#SERVICES[@]})); then say "all services healthy"; else say "all services healthy ($total instances)"; fi
}

start_console() {
  local pidfile="$RUN/console.pid" deadline=$((SECONDS + 60))
  if ! pid_alive "$pidfile"; then
    port_open "$CONSOLE_PORT" && die "port $CONSOLE_PORT (for the console) is taken by a process we did not start"
    # Reception registers visits with the console's own channel key (system console, the visit channel alone:
    # migrate made it), with which intake believes the clerk it names and records them on the matter.
    [[ -n "${CONSOLE_CHANNEL_KEY:-}" ]] || die "no CONSOLE_CHANNEL_KEY in $LOCAL/credentials.env: run make up"
    HTTP_PORT="$CONSOLE_PORT" setsid nohup env "DATABASE_URL=$DATABASE_URL_CONSOLE" "INTAKE_CHANNEL_KEY=$CONSOLE_CHANNEL_KEY" \
      "$ROOT/.venv/bin/xinfang-console" serve >>"$LOGS/console.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CONSOLE_PORT/health")" == 200 ]]; do
    pid_alive "$pidfile" || die "the console exited during start-up; see $LOGS/console.log"
    ((SECONDS < deadline)) || die "the console is not healthy after 60 s; see $LOGS/console.log"
    sleep 0.25
  done
}

stop() {
  local svc k
  stop_pid "$RUN/console.pid" "console"
  for svc in "${SERVICES[@]}"; do
    for k in $(instance_numbers "$svc" | sort -rn); do
      stop_pid "$RUN/$(instance_name "$svc" "$k").pid" "$(instance_name "$svc" "$k")"
    done
  done
  for standin in sms mail; do stop_pid "$RUN/$standin.pid" "$standin stand-in"; done
}

# Every instance with a pid file (and instance 1 of each service in any case), with its port.
status() {
  local rc=0 svc k name pidfile
  for svc in "${SERVICES[@]}"; do
    for k in $( (echo 1; instance_numbers "$svc") | sort -nu); do
      name="$(instance_name "$svc" "$k")"
      pidfile="$RUN/$name.pid"
      if pid_alive "$pidfile"; then
        echo "$name: running (pid $(cat "$pidfile")) http://127.0.0.1:$(instance_port "$svc" "$k")"
      elif [[ -f "$pidfile" ]]; then
        echo "$name: stopped (stale pid file $pidfile; make up or make down clears it)"; rc=3
      else
        echo "$name: stopped"; rc=3
      fi
    done
  done
  for standin in mail sms; do
    if pid_alive "$RUN/$standin.pid"; then echo "$standin stand-in: running"; else echo "$standin stand-in: stopped"; rc=3; fi
  done
  if pid_alive "$RUN/console.pid"; then
    echo "console: running (pid $(cat "$RUN/console.pid")) http://127.0.0.1:$CONSOLE_PORT"
  else
    echo "console: stopped"; rc=3
  fi
  return $rc
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  migrate) migrate ;;
  *) die "usage: services.sh start|stop|status|migrate" ;;
esac
