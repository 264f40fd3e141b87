#!/usr/bin/env bash
# The five services as background processes (logs in .local/log, pids in .local/run), and before them the
# stand-ins notify sends through: the SMTP server (127.0.0.1:1025, .local/mail/) and the SMS gateway
# (127.0.0.1:8010, .local/sms/). Usage: services.sh start|stop|status|migrate
source "$(dirname "$0")/lib.sh"
load_credentials

migrate() {
  for svc in "${SERVICES[@]}"; do
    "$ROOT/.venv/bin/xinfang-$svc" migrate >>"$LOGS/$svc.log" 2>&1 || die "migrating $svc failed; see $LOGS/$svc.log"
  done
  say "migrations applied (one schema per service)"
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

start() {
  start_standin mail "$SMTP_PORT" "$ROOT/deploy/local/mail_sink.py" --port "$SMTP_PORT" --dir "$LOCAL/mail"
  start_standin sms "$SMS_PORT" "$ROOT/deploy/local/sms_gateway.py" --port "$SMS_PORT" --dir "$LOCAL/sms" \
    --receipts-url "http://127.0.0.1:${SERVICE_PORTS[notify]}/v1/sms/receipts"
  for svc in "${SERVICES[@]}"; do
    local pidfile="$RUN/$svc.pid" port="${SERVICE_PORTS[$svc]}"
    if pid_alive "$pidfile"; then continue; fi
    port_open "$port" && die "port $port (for $svc) is taken by a process we did not start"
    setsid nohup "$ROOT/.venv/bin/xinfang-$svc" serve >>"$LOGS/$svc.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  done
  local deadline=$((SECONDS + 120))
  for svc in "${SERVICES[@]}"; do
    local port="${SERVICE_PORTS[$svc]}"
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" == 200 ]]; do
      pid_alive "$RUN/$svc.pid" || die "$svc exited during start-up; see $LOGS/$svc.log"
      ((SECONDS < deadline)) || die "$svc is not healthy after 120 s; see $LOGS/$svc.log"
      sleep 0.25
    done
  done
  say "all services healthy"
}

stop() {
  for svc in "${SERVICES[@]}"; do stop_pid "$RUN/$svc.pid" "$svc"; done
  for standin in sms mail; do stop_pid "$RUN/$standin.pid" "$standin stand-in"; done
}

status() {
  local rc=0
  for svc in "${SERVICES[@]}"; do
    if pid_alive "$RUN/$svc.pid"; then
      echo "$svc: running (pid $(cat "$RUN/$svc.pid")) http://127.0.0.1:${SERVICE_PORTS[$svc]}"
    else
      echo "$svc: stopped"; rc=3
    fi
  done
  for standin in mail sms; do
    if pid_alive "$RUN/$standin.pid"; then echo "$standin stand-in: running"; else echo "$standin stand-in: stopped"; rc=3; fi
  done
  return $rc
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  migrate) migrate ;;
  *) die "usage: services.sh start|stop|status|migrate" ;;
esac
