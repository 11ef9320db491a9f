package connectors_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/connectors/iceberg"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/testsupport/versitygw"
)

// BenchmarkEncodeCompress measures one 5,000-event batch (~3 MB) through
// each encoder and compressor, per event.
func BenchmarkEncodeCompress(b *testing.B) {
	evs := connectortest.Events(1, 5000)
	for _, enc := range connectortest.Encodings {
		for _, comp := range connectortest.Compressions {
			b.Run(enc+"-"+comp, func(b *testing.B) {
				batch := connectortest.MakeBatch(b, 0, 0, evs, enc, comp)
				e, c, err := connectors.NewBody(enc, comp, "deflate")
				if err != nil {
					b.Fatal(err)
				}
				var out []byte
				b.ReportAllocs()
				for b.Loop() {
					out, _ = connectors.EncodeBody(e, c, batch)
				}
				b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
				raw, _ := connectors.EncodeBody(e, connectors.None{}, batch)
				b.ReportMetric(float64(len(raw))/float64(len(out)), "ratio")
			})
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runConnector runs one connector over the events topic of the broker at
// FIREHOSE_BENCH_BROKER (another process, so only the connector's CPU is
// counted) until it delivered n events, and reports events per
// CPU-second and peak heap.
func runConnector(b *testing.B, name string, c connectors.Config, sink connectors.Sink) {
	broker := os.Getenv("FIREHOSE_BENCH_BROKER")
	n, _ := strconv.Atoi(os.Getenv("FIREHOSE_BENCH_EVENTS"))
	if broker == "" || n == 0 || os.Getenv("FIREHOSE_BENCH_TOPIC") == "" {
		b.Skip("set FIREHOSE_BENCH_BROKER, FIREHOSE_BENCH_EVENTS and FIREHOSE_BENCH_TOPIC (make bench does)")
	}
	c.Name, c.Topic = name, os.Getenv("FIREHOSE_BENCH_TOPIC")
	c.Group = "bench-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	w, err := connectors.New(connectors.Options{
		Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json",
		Sink: sink, Kafka: []kgo.Opt{kgo.SeedBrokers(broker)},
	})
	if err != nil {
		b.Fatal(err)
	}
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cpu0, wall0 := cpuTime(), time.Now()
	go func() { done <- w.Run(ctx) }()
	for w.Stats().Delivered.Load() < int64(n) {
		select {
		case err := <-done:
			b.Fatalf("connector stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	cancel()
	<-done
	close(stopSampling)
	<-sampled
	b.ReportMetric(float64(n)/cpu.Seconds(), "events/CPU-s")
	b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.Logf("%s: %d events in %s wall, %s CPU: %.0f events per CPU-second, %.0f events/s, peak heap %.0f MiB, %d batches",
		name, n, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(n)/cpu.Seconds(), float64(n)/wall.Seconds(),
		float64(peak.Load())/(1<<20), w.Stats().Batches.Load())
}

// benchFile runs the file connector into a new directory with the given
// body, in batches of 5 MB, 100,000 events or a second.
func benchFile(b *testing.B, name, encoding, compression string) {
	benchFileBatches(b, name, encoding, compression, connectors.Bounds{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: time.Second})
}

func benchFileBatches(b *testing.B, name, encoding, compression string, bounds connectors.Bounds) {
	for b.Loop() {
		cfg := file.Config{Dir: b.TempDir()}
		cfg.Defaults()
		sink, err := file.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		runConnector(b, name, connectors.Config{Encoding: encoding, Compression: compression, Batch: bounds}, sink)
	}
}

// BenchmarkIcebergConnectorKafka: the events topic to an Iceberg table
// (a SQLite catalog, a local warehouse), Parquet with snappy in batches of
// 5 MB, 100,000 events or a second, committed every minute: the CPU of
// encoding, writing, reading each file's footer and committing.
func BenchmarkIcebergConnectorKafka(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		cfg := iceberg.Config{Catalog: iceberg.Catalog{Type: "sql", URI: "sqlite://" + dir + "/catalog.db"}, Warehouse: "file://" + dir + "/warehouse"}
		cfg.Defaults()
		sink, err := iceberg.New(context.Background(), cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		runConnector(b, "iceberg", connectors.Config{Encoding: "parquet", Compression: "snappy",
			Batch: connectors.Bounds{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: time.Second}}, sink)
		st := sink.Stats()
		b.Logf("iceberg: %d commits at commit_interval %s, %d files, catalog round trip %s mean, the last commit's oldest file waited %s",
			st.Commits.Load(), cfg.CommitInterval, st.Files.Load(), time.Duration(st.CommitTime.Load()/max(1, st.Commits.Load())).Round(time.Microsecond),
			time.Duration(st.LastWait.Load()).Round(time.Millisecond))
		_ = sink.Close(context.Background())
	}
}

// BenchmarkFileLargeBatchesConnectorKafka: the same files in batches of
// 32 MiB, each packed as it fills (connectors.PackBytes) and encoded a
// pack at a time: what warehouse-sized objects cost beside 5 MB ones.
func BenchmarkFileLargeBatchesConnectorKafka(b *testing.B) {
	bounds := connectors.Bounds{MaxEvents: 10_000_000, MaxBytes: 32 << 20, MaxAge: 5 * time.Second}
	for _, body := range [][2]string{{"ndjson", "gzip"}, {"parquet", "snappy"}} {
		b.Run(body[0]+"-"+body[1], func(b *testing.B) {
			benchFileBatches(b, "file-large-"+body[0]+"-"+body[1], body[0], body[1], bounds)
		})
	}
}

// BenchmarkFileConnectorKafka: the events topic to local files, gzip NDJSON
// in 5 MB batches.
func BenchmarkFileConnectorKafka(b *testing.B) { benchFile(b, "file", "ndjson", "gzip") }

// BenchmarkFileParquetConnectorKafka: the same files as Parquet, its
// column chunks compressed with snappy and with zstd.
func BenchmarkFileParquetConnectorKafka(b *testing.B) {
	for _, comp := range []string{"snappy", "zstd"} {
		b.Run(comp, func(b *testing.B) { benchFile(b, "file-parquet-"+comp, "parquet", comp) })
	}
}

// BenchmarkS3ConnectorKafka: the same into versitygw on loopback.
func BenchmarkS3ConnectorKafka(b *testing.B) {
	if os.Getenv("FIREHOSE_BENCH_BROKER") == "" {
		b.Skip("set FIREHOSE_BENCH_BROKER and FIREHOSE_BENCH_EVENTS (make bench does)")
	}
	srv := versitygw.Start(b)
	for i := 0; b.Loop(); i++ {
		bucket := srv.Bucket(b, fmt.Sprintf("bench%d", i))
		cfg := s3dest.Config{Bucket: bucket, Endpoint: srv.Endpoint, PathStyle: true, Region: "us-east-1", AccessKeyID: srv.Access, SecretAccessKey: srv.Secret}
		cfg.Defaults()
		sink, err := s3dest.New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		runConnector(b, "s3", connectors.Config{Encoding: "ndjson", Compression: "gzip",
			Batch: connectors.Bounds{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: time.Second}}, sink)
	}
}
