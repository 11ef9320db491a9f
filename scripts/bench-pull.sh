#!/usr/bin/env bash
# The pull API under followers, each process on its own: `firehose broker`,
# `firehose run --role api`, and the load client (scripts/pullload), which
# produces PULL_RATE events/s over PULL_ACCOUNTS accounts straight to the
# events topic (standing in for the processor) and runs one follower per
# account for the first PULL_FOLLOWERS of them. For each follower count it
# measures following the head, then resuming from PULL_BACK back. The CPU
# figure is the API process's alone (/proc/PID/stat).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-19097}
HTTP=${BENCH_HTTP_PORT:-19098}
ACCOUNTS=${PULL_ACCOUNTS:-500}
RATE=${PULL_RATE:-10000}
DURATION=${PULL_DURATION:-20s}
BACK=${PULL_BACK:-30s}
FOLLOWERS=${PULL_FOLLOWERS:-50 500}
WORK=$(mktemp -d)
broker= api=
cleanup() {
  for p in $api $broker; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/pullload" ./scripts/pullload
./bin/firehose broker --port "$PORT" >"$WORK/broker.log" 2>&1 &
broker=$!
for _ in $(seq 100); do grep -q "listening" "$WORK/broker.log" 2>/dev/null && break; sleep 0.1; done

"$WORK/pullload" tokens -accounts "$ACCOUNTS" -out "$WORK"
cat >"$WORK/api.yaml" <<YAML
kafka: {brokers: ["127.0.0.1:$PORT"]}
topology:
  raw:    {name: pull.raw, partitions: 6}
  events: {name: pull.events, partitions: 6, compression: snappy}
  dlq:    {name: pull.dlq, partitions: 6}
  state:  {name: pull.state, partitions: 6}
api:
  listen: 127.0.0.1:$HTTP
  position_key: "bench-position-key-0123456789abcdef0123456789"
  tokens_file: $WORK/tokens.yaml
  max_connections_per_client: 4096   # every follower comes from the load client's address
YAML
./bin/firehose topology apply -c "$WORK/api.yaml" --log-level warn >/dev/null

for n in $FOLLOWERS; do
  for back in 0s "$BACK"; do
    ./bin/firehose run -c "$WORK/api.yaml" --role api --log-level warn >"$WORK/api.log" 2>&1 &
    api=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    "$WORK/pullload" run -dir "$WORK" -api "http://127.0.0.1:$HTTP" -brokers "127.0.0.1:$PORT" -topic pull.events \
      -api-pid "$api" -followers "$n" -rate "$RATE" -duration "$DURATION" -back "$back"
    kill "$api"; wait "$api" 2>/dev/null || true
    api=
  done
done
