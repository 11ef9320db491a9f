#!/usr/bin/env bash
# The whole pipeline in one Firehose process, as a user runs it: `firehose
# run --role all` against `firehose broker` in its own process, over
# BENCH_EVENTS generated lead events (~650 bytes) in 6 partitions: keep the
# event types but filter.* (8 of 10), mask SSN and email, add a tag, write
# gzip NDJSON files of 10,000 events or 5 s. It prints events per CPU-second
# of the Firehose process alone, events/s, and its peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${BENCH_EVENTS:-1000000}
PORT=${BENCH_PORT:-19095}
HTTP=${BENCH_HTTP_PORT:-19096}
COMPRESSION=${BENCH_COMPRESSION:-snappy}   # topology.events.compression
WORK=$(mktemp -d)
export FIREHOSE_BROKER=127.0.0.1:$PORT

./bin/firehose broker --port "$PORT" >"$WORK/broker.log" 2>&1 &
broker=$!
run=
cleanup() {
  [ -n "$run" ] && kill "$run" 2>/dev/null && wait "$run" 2>/dev/null || true
  kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q "listening" "$WORK/broker.log" 2>/dev/null && break
  sleep 0.1
done

cat >"$WORK/pipeline.yaml" <<YAML
kafka: {brokers: ["$FIREHOSE_BROKER"]}
topology:
  raw:    {name: pipe.raw, partitions: 6}
  events: {name: pipe.events, partitions: 6, compression: $COMPRESSION}
  dlq:    {name: pipe.dlq, partitions: 6}
  state:  {name: pipe.state, partitions: 6}
processor:
  transactional_id: bench-pipeline
  filter: {exclude_event_types: ["filter.*"]}
  enrich: {tags: {pipeline: bench}}
  mask:
    defaults: false
    rules:
      - {path: lead_data.ssn, strategy: last4}
      - {path: lead_data.email, strategy: email}
connectors:
  - name: files
    type: file
    batch: {max_events: 10000, max_bytes: 64MB, max_age: 5s}
    encoding: ndjson
    compression: gzip
    file: {dir: "$WORK/out"}
api: {listen: "127.0.0.1:$HTTP", pprof: true}   # curl 127.0.0.1:$HTTP/debug/pprof/heap while it runs
YAML

./bin/firehose topology apply -c "$WORK/pipeline.yaml" --log-level warn >/dev/null
echo "producing $EVENTS generated events to pipe.raw..."
./bin/firehose produce -c "$WORK/pipeline.yaml" --log-level warn --generate "$EVENTS" --resources 20000 >/dev/null

metric() { # the sum of a metric's samples whose labels contain $2
  curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v name="$1" -v want="$2" \
    'index($0, name) == 1 && index($0, want) { s += $NF } END { printf "%d", s }'
}

echo "firehose run --role all: processor and file connector in one process; the processor writes with $COMPRESSION"
start=$(date +%s.%N)
./bin/firehose run -c "$WORK/pipeline.yaml" --role all --log-level warn >"$WORK/run.log" 2>&1 &
run=$!
while :; do
  sleep 0.5
  in=$(metric firehose_processor_events_total 'result="in"' 2>/dev/null || echo 0)
  out=$(metric firehose_processor_events_total 'result="out"' 2>/dev/null || echo 0)
  done=$(metric firehose_connector_events_total 'result="delivered"' 2>/dev/null || echo 0)
  if [ "${in:-0}" -ge "$EVENTS" ] && [ "${done:-0}" -ge "${out:-1}" ] && [ "${out:-0}" -gt 0 ]; then break; fi
  if ! kill -0 "$run" 2>/dev/null; then echo "firehose run exited:"; cat "$WORK/run.log"; exit 1; fi
done
end=$(date +%s.%N)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$run/stat")
hz=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$run/status")
awk -v n="$EVENTS" -v u="$utime" -v s="$stime" -v hz="$hz" -v t0="$start" -v t1="$end" -v rss="$rss" -v out="$out" 'BEGIN {
  cpu = (u + s) / hz; wall = t1 - t0
  printf "pipeline: %d events in, %d delivered, in %.1fs wall, %.1fs CPU: %.0f events per CPU-second, %.0f events/s, peak RSS %.0f MiB\n",
    n, out, wall, cpu, n / cpu, n / wall, rss / 1024
}'
