#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft combined mode (broker + controller), one node, data under .local/kafka.
# Two client listeners: 127.0.0.1:9092 open (PLAINTEXT) for local tools, whose anonymous principal is a super user,
# and 127.0.0.1:9094 SASL_PLAINTEXT with SCRAM-SHA-512, where the services connect as their own principals and the
# ACLs generated from the topic registry decide what each may do (kafka_security.py sets users and ACLs).
# Usage: kafka.sh start|stop|status
source "$(dirname "$0")/lib.sh"
PIDFILE="$RUN/kafka.pid"
CONF="$KAFKA_HOME/server.properties"

write_config() {
  mkdir -p "$KAFKA_HOME/data"
  cat >"$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS
log.dirs=$KAFKA_HOME/data
num.partitions=12
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  cat >"$KAFKA_HOME/log4j2.xml" <<'XML'
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="INFO"><AppenderRef ref="out"/></Root></Loggers>
</Configuration>
XML
}

start() {
  if pid_alive "$PIDFILE"; then say "Kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by a process we did not start"; fi
  if port_open "$KAFKA_SASL_PORT"; then die "port $KAFKA_SASL_PORT is taken by a process we did not start"; fi
  [[ -d "$KAFKA_HOME/libs" ]] || die "Kafka jars missing: run deploy/local/install.sh"
  write_config
  if [[ ! -f "$KAFKA_HOME/data/meta.properties" ]]; then
    local id
    id="$(java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" -cp "$KAFKA_HOME/libs/*" \
      kafka.tools.StorageTool format -t "$id" -c "$CONF" >"$LOGS/kafka-format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $LOGS/kafka-format.log"
  fi
  local started=$SECONDS
  : >"$LOGS/kafka.log"
  setsid nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" -cp "$KAFKA_HOME/libs/*" \
    kafka.Kafka "$CONF" >>"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 240); do
    grep -q "Kafka Server started" "$LOGS/kafka.log" && { say "Kafka started in $((SECONDS - started)) s at 127.0.0.1:$KAFKA_PORT (SCRAM: $KAFKA_SASL_PORT)"; return 0; }
    pid_alive "$PIDFILE" || die "Kafka exited during start-up; see $LOGS/kafka.log"
    sleep 0.25
  done
  die "Kafka did not start in 60 s; see $LOGS/kafka.log"
}

case "${1:-status}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" Kafka ;;
  status) if pid_alive "$PIDFILE"; then echo "kafka: running (pid $(cat "$PIDFILE"))"; else echo "kafka: stopped"; exit 3; fi ;;
  *) die "usage: kafka.sh start|stop|status" ;;
esac
