#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller, 127.0.0.1 only) for tests and the demo,
# run straight from the Maven Central jars (no tarball, no Docker).
#
# Usage: deploy/kafka-local.sh fetch|start|stop|status|reset|logs [-f]|tool MAIN [ARGS...]
#   fetch   download the broker jars with Maven into $KAFKA_STATE_DIR/libs (cached)
#   start   fetch, format the storage (first time), start the broker in the background, wait until
#           it is ready; prints how long that took. Exit 0 if it is (or already was) running.
#   stop    SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT s; idempotent
#   status  "running pid=N port=P controller_port=C" (exit 0) or "stopped" (exit 1)
#   reset   stop, then wipe data and logs (a fresh cluster); keeps the jars
#   logs    tail of the broker log (.kafka/logs/server.log); "logs -f" follows it
#   tool    run a Kafka CLI class, e.g.
#           deploy/kafka-local.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   KAFKA_STATE_DIR        state dir (libs/, data/, logs/, server.properties, kafka.pid); default <repo>/.kafka
#   KAFKA_PORT             client port (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   KAFKA_HEAP_OPTS        JVM heap flags (default "-Xms256m -Xmx768m")
#   KAFKA_JVM_OPTS         other JVM flags (default: G1 settings of Kafka's own scripts)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_LOG_LEVEL        root log level of the broker log (default WARN)
#   JAVA_HOME              java to use (default: java on PATH); Java >= 17 is required
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF="$ROOT/deploy/kafka"
STATE="${KAFKA_STATE_DIR:-$ROOT/.kafka}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"            # absolute, also when KAFKA_STATE_DIR is relative
LIBS="$STATE/libs"
DATA="$STATE/data"
LOGS="$STATE/logs"
PIDF="$STATE/kafka.pid"
PROPS="$STATE/server.properties"
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
read -r -a HEAP <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
read -r -a JVM_OPTS <<<"${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
LOG_LEVEL="${KAFKA_LOG_LEVEL:-WARN}"
ME="kafka-local"

die() {  # die MESSAGE [HINT]: one-line error, optional hint, exit 1
  echo "$ME: error: $1" >&2
  if [[ -n "${2:-}" ]]; then echo "$ME: hint: $2" >&2; fi
  exit 1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

check_port_arg() {
  if [[ ! "$2" =~ ^[1-9][0-9]{0,4}$ ]] || (( $2 > 65535 )); then
    die "$1=$2 is not a TCP port" "use a number in 1..65535"
  fi
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 \
    || die "java not found ($JAVA)" "install a JDK/JRE >= 17 (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
  local line version major
  line="$("$JAVA" -version 2>&1 | head -n 1)"
  version="$(sed -nE 's/.*version "([^"]*)".*/\1/p' <<<"$line")"
  major="${version%%.*}"
  if [[ "$major" == 1 ]]; then major="$(cut -d. -f2 <<<"$version")"; fi   # "1.8.0_x" -> 8
  major="${major%%[^0-9]*}"                                                 # "17-ea" -> 17
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version from: $line" "install Java >= 17 or set JAVA_HOME"
  (( major >= 17 )) || die "Kafka 4.x needs Java >= 17, found $major ($JAVA)" "install openjdk-17 (or newer) or set JAVA_HOME to one"
}

slf4j_bindings() {
  find "$LIBS" -maxdepth 1 -type f \( -name 'log4j-slf4j-impl-*.jar' -o -name 'log4j-slf4j2-impl-*.jar' \
    -o -name 'slf4j-reload4j-*.jar' -o -name 'slf4j-simple-*.jar' -o -name 'logback-classic-*.jar' \
    -o -name 'slf4j-log4j12-*.jar' \) | wc -l
}

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found; it is needed once to download the Kafka jars into $LIBS" "apt-get install maven (or copy a complete libs/ dir there)"
  check_java
  echo "$ME: fetching Kafka jars with Maven into $LIBS ..."
  local t0; t0="$(now)"
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  if ! mvn -B -ntp -q -Dstyle.color=never -f "$CONF/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$STATE/fetch.log" 2>&1; then
    tail -n 30 "$STATE/fetch.log" >&2
    die "Maven could not download the Kafka jars (full output: $STATE/fetch.log)" \
      "check access to Maven Central and the versions in deploy/kafka/pom.xml"
  fi
  compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null || die "kafka_2.13 jar missing after the download" "check deploy/kafka/pom.xml"
  local n; n="$(slf4j_bindings)"
  [[ "$n" == 1 ]] || die "$n SLF4J bindings in $LIBS (want exactly 1)" "fix the logging dependencies in deploy/kafka/pom.xml"
  touch "$LIBS/.complete"
  echo "$ME: fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(since "$t0") s"
}

render() {
  mkdir -p "$DATA" "$LOGS"
  sed -e "s|@DATA_DIR@|$DATA|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CPORT|g" \
    "$CONF/server.properties.in" >"$PROPS"
}

new_cluster_id() {  # like StorageTool random-uuid: base64url of 16 random bytes, no padding, no leading '-'
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

format_storage() {
  if [[ -f "$DATA/meta.properties" ]]; then return 0; fi
  local cid; cid="$(new_cluster_id)"
  if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$CONF/log4j2-tools.xml" -cp "$LIBS/*" \
      kafka.tools.StorageTool format --cluster-id "$cid" --config "$PROPS" >"$LOGS/format.log" 2>&1; then
    tail -n 20 "$LOGS/format.log" >&2
    die "formatting the storage in $DATA failed (see $LOGS/format.log)" "try: $0 reset"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmdline() {  # the command line of a pid, NUL-separated args turned into spaces
  if [[ -r "/proc/$1/cmdline" ]]; then tr '\0' ' ' <"/proc/$1/cmdline"; else ps -p "$1" -o args= 2>/dev/null || true; fi
}

pid_of_broker() {  # print the pid of our broker if it is alive, else fail (and drop a stale pid file)
  [[ -f "$PIDF" ]] || return 1
  local pid; pid="$(cat "$PIDF" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cmdline "$pid")" == *"kafka.Kafka $PROPS"* ]]; then
    echo "$pid"
    return 0
  fi
  rm -f "$PIDF"
  return 1
}

prop() { sed -nE "s/^$1=(.*)$/\1/p" "$PROPS" 2>/dev/null | tail -n 1; }
running_port() { prop listeners | sed -nE 's/.*PLAINTEXT:\/\/[^,]*:([0-9]+).*/\1/p'; }
running_cport() { prop listeners | sed -nE 's/.*CONTROLLER:\/\/[^,]*:([0-9]+).*/\1/p'; }

LOG_OFFSET=0  # size of server.log before this start: show only what this start wrote

show_logs_tail() {  # show_logs_tail N: the last N lines this start wrote to server.log and stdout.log
  local f="$LOGS/server.log" size
  size="$(stat -c %s "$f" 2>/dev/null || echo 0)"
  (( size >= LOG_OFFSET )) || LOG_OFFSET=0   # rotated meanwhile
  if (( size > LOG_OFFSET )); then
    echo "----- $f (last lines of this start)" >&2
    tail -c +"$((LOG_OFFSET + 1))" "$f" | tail -n "$1" >&2
  fi
  f="$LOGS/stdout.log"
  if [[ -s "$f" ]]; then echo "----- $f" >&2; tail -n "$1" "$f" >&2; fi
}

kill_pid() {  # kill_pid PID: SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
  local pid="$1" deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      echo "$ME: broker (pid $pid) still alive after ${KAFKA_STOP_TIMEOUT:-30} s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
}

start() {
  local pid
  if pid="$(pid_of_broker)"; then
    echo "$ME: already running (pid $pid, 127.0.0.1:$(running_port))"
    return 0
  fi
  check_port_arg KAFKA_PORT "$PORT"
  check_port_arg KAFKA_CONTROLLER_PORT "$CPORT"
  [[ "$PORT" != "$CPORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $PORT" "use two different ports"
  check_java
  local p
  for p in "$PORT" "$CPORT"; do
    if port_open "$p"; then
      local who="" owner=""
      if command -v ss >/dev/null 2>&1; then
        owner="$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -nE 's/.*users:\(\("[^"]+",pid=([0-9]+).*/\1/p' | head -n 1)"
        who="$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -nE 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/ (\1, pid \2)/p' | head -n 1)"
      fi
      if [[ -n "$owner" && "$(cmdline "$owner")" == *"kafka.Kafka $PROPS"* ]]; then
        echo "$owner" >"$PIDF"   # our broker, but its pid file was lost: adopt it
        echo "$ME: already running (pid $owner, 127.0.0.1:$(running_port))"
        return 0
      fi
      die "port 127.0.0.1:$p is already in use by another process$who, not by this project's broker" \
        "stop that process, or pick free ports with KAFKA_PORT=... KAFKA_CONTROLLER_PORT=..."
    fi
  done
  fetch
  render
  format_storage

  local t0; t0="$(now)"
  rm -f "$PIDF" "$LOGS/stdout.log"
  LOG_OFFSET="$(stat -c %s "$LOGS/server.log" 2>/dev/null || echo 0)"
  # setsid: the broker gets its own session, so it outlives the shell (and job) that started it.
  # The inner bash writes its own pid, then execs java: that pid is the JVM's.
  local detach=()
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); else detach=(nohup); fi
  # shellcheck disable=SC2016  # $$, $0 and $@ are the inner shell's
  "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PIDF" \
    "$JAVA" "${HEAP[@]}" "${JVM_OPTS[@]}" \
    -Dkafka.logs.dir="$LOGS" -Dkafka.root.loglevel="$LOG_LEVEL" \
    -Dlog4j2.configurationFile="$CONF/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    >"$LOGS/stdout.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  pid=""
  while [[ -z "$pid" ]]; do
    pid="$(cat "$PIDF" 2>/dev/null || true)"
    (( SECONDS < deadline )) || die "the broker process did not start" "see $LOGS/stdout.log"
    [[ -n "$pid" ]] || sleep 0.05
  done
  # Port 9092 opens only once the broker is registered and unfenced, i.e. ready for clients.
  until port_open "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDF"
      show_logs_tail 40
      die "the broker exited while starting (logs above; full log: $LOGS/server.log)" \
        "if the data dir is damaged or from another Kafka version: $0 reset"
    fi
    if (( SECONDS >= deadline )); then
      show_logs_tail 20
      kill_pid "$pid"
      rm -f "$PIDF"
      die "the broker was not ready on 127.0.0.1:$PORT within ${KAFKA_START_TIMEOUT:-90} s (stopped it again)" \
        "raise KAFKA_START_TIMEOUT, or look at $LOGS/server.log"
    fi
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null || die "the broker exited right after opening its port" "see $LOGS/server.log"
  echo "$ME: Kafka ready on 127.0.0.1:$PORT (pid $pid) after $(since "$t0") s"
}

stop() {
  local pid
  if ! pid="$(pid_of_broker)"; then
    echo "$ME: not running"
    return 0
  fi
  kill_pid "$pid"
  rm -f "$PIDF"
  echo "$ME: stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(pid_of_broker)"; then
    echo "running pid=$pid port=$(running_port) controller_port=$(running_cport) state_dir=$STATE"
    return 0
  fi
  echo "stopped"
  return 1
}

reset() {
  stop
  rm -rf "$DATA" "$LOGS" "$PROPS"
  echo "$ME: wiped $DATA and $LOGS (jars kept in $LIBS)"
}

logs() {
  [[ -f "$LOGS/server.log" ]] || die "no broker log at $LOGS/server.log" "start the broker first: $0 start"
  if [[ "${1:-}" == "-f" ]]; then exec tail -n 50 -F "$LOGS/server.log"; fi
  tail -n "${1:-100}" "$LOGS/server.log"
}

tool() {
  [[ $# -ge 1 ]] || die "tool needs a main class" "e.g. $0 tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT --list"
  check_java
  fetch
  local main="$1"
  shift
  exec "$JAVA" -Xmx256m -Dkafka.root.loglevel="$LOG_LEVEL" -Dlog4j2.configurationFile="$CONF/log4j2-tools.xml" \
    -cp "$LIBS/*" "$main" "$@"
}

usage() { echo "usage: $0 fetch|start|stop|status|reset|logs [-f|N]|tool MAIN [ARGS...]" >&2; }

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) reset ;;
  logs) logs "$@" ;;
  tool) tool "$@" ;;
  -h | --help | help) usage; exit 0 ;;
  *) usage; exit 2 ;;
esac
