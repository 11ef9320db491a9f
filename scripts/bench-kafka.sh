#!/usr/bin/env bash
# End-to-end benchmarks through a real Kafka-protocol broker. The broker runs
# in its own process (bin/firehose broker), so the CPU time each benchmark
# reports is Firehose's alone.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${BENCH_EVENTS:-1000000}
PORT=${BENCH_PORT:-19092}
export FIREHOSE_BROKER=127.0.0.1:$PORT

./bin/firehose broker --port "$PORT" >/tmp/firehose-bench-broker.log 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening" /tmp/firehose-bench-broker.log 2>/dev/null && break
  sleep 0.1
done

./bin/firehose topology apply --log-level warn >/dev/null
echo "producing $EVENTS generated events (~600 bytes each) to events.raw..."
./bin/firehose produce --log-level warn --generate "$EVENTS" --resources 20000

export FIREHOSE_BENCH_BROKER=$FIREHOSE_BROKER FIREHOSE_BENCH_EVENTS=$EVENTS
show() { grep -E 'events per CPU-second|FAIL|panic|Error' || true; }

echo
echo "processor: decode, dedupe, enrich, mask (default rules), encode, in transactions"
go test ./processor -run '^$' -bench '^BenchmarkProcessorKafka$' -benchtime 1x -timeout 30m -v 2>&1 | show

# The connectors read a topic of exactly $EVENTS events, written without
# transactions, so the benchmark knows when they are all delivered.
cat > /tmp/firehose-bench-connectors.yaml <<YAML
kafka: {brokers: ["$FIREHOSE_BROKER"]}
topology:
  raw: {name: bench.raw}
  events: {name: bench.events}
  dlq: {name: bench.dlq}
  state: {name: bench.state}
YAML
./bin/firehose topology apply -c /tmp/firehose-bench-connectors.yaml --log-level warn >/dev/null
./bin/firehose produce -c /tmp/firehose-bench-connectors.yaml --topic bench.events --log-level warn --generate "$EVENTS" --resources 20000 >/dev/null
export FIREHOSE_BENCH_TOPIC=bench.events

echo
echo "connectors: $EVENTS events to gzip NDJSON in 5 MB batches, then to files as Parquet (snappy, zstd)"
go test ./connectors -run '^$' -bench '^Benchmark(File|S3|FileParquet)ConnectorKafka$' -benchtime 1x -timeout 30m -v 2>&1 | show

echo
echo "connectors: the same Parquet (snappy) committed to an Iceberg table (SQLite catalog, local warehouse) every minute"
go test ./connectors -run '^$' -bench '^BenchmarkIcebergConnectorKafka$' -benchtime 1x -timeout 30m -v 2>&1 | grep -E 'events per CPU-second|commits at|FAIL|panic|Error' || true

echo
echo "connectors: the same in 32 MiB batches, packed as they fill (gzip NDJSON, Parquet snappy)"
go test ./connectors -run '^$' -bench '^BenchmarkFileLargeBatchesConnectorKafka$' -benchtime 1x -timeout 30m -v 2>&1 | show
