package processor

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProcessorKafka runs the real processor over the events already
// in the raw topic of the broker at FIREHOSE_BENCH_BROKER, which runs in
// another process so that only the processor's CPU is counted, and reports
// events per CPU-second. make bench sets it up; without the variable it is
// skipped.
func BenchmarkProcessorKafka(b *testing.B) {
	broker := os.Getenv("FIREHOSE_BENCH_BROKER")
	n, _ := strconv.Atoi(os.Getenv("FIREHOSE_BENCH_EVENTS"))
	if broker == "" || n == 0 {
		b.Skip("set FIREHOSE_BENCH_BROKER and FIREHOSE_BENCH_EVENTS (make bench does)")
	}
	dev, err := os.ReadFile("../config/dev.yaml") // what make run runs
	if err != nil {
		b.Fatal(err)
	}
	cfg := parseDoc(b, string(dev), func(k string) (string, bool) {
		return map[string]string{"FIREHOSE_BROKER": broker}[k], k == "FIREHOSE_BROKER"
	})
	if c := os.Getenv("BENCH_COMPRESSION"); c != "" {
		cfg.Topology.Events.Compression = c // what the processor's producer writes with
	}
	for i := 0; b.Loop(); i++ {
		cfg.Processor.Group = "bench-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		cfg.Processor.TransactionalID = cfg.Processor.Group
		o := cfg.options()
		o.Kafka = []kgo.Opt{kgo.SeedBrokers(broker)}
		p, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cpu0, wall0 := cpuTime(), time.Now()
		go func() { done <- p.Run(ctx) }()
		for p.Stats().In.Load() < int64(n) {
			select {
			case err := <-done:
				b.Fatalf("processor stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		cpu, wall := cpuTime()-cpu0, time.Since(wall0)
		cancel()
		<-done
		st := p.Stats()
		b.ReportMetric(float64(n)/cpu.Seconds(), "events/CPU-s")
		b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
		b.Logf("events compression %s: %d events in %s wall, %s CPU: %.0f events per CPU-second, %.0f events/s; emitted %d, deduplicated %d, masked %d values, %d transactions",
			cfg.Topology.Events.Compression, n, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(n)/cpu.Seconds(), float64(n)/wall.Seconds(),
			st.Emitted.Load(), st.Deduplicated.Load(), st.Masked.Load(), st.Transactions.Load())
	}
}
