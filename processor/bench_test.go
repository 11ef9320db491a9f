package processor

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// benchRecords is a fixed, seeded set of ~600-byte lead events as raw
// records, 2% of them duplicates, spread over 6 partitions by resource.
func benchRecords(n int) []*kgo.Record {
	g := generator.New(42, 5000)
	g.DuplicateRate = 0.02
	clock := time.Date(2024, 1, 15, 14, 30, 0, 0, time.UTC)
	g.Now = func() time.Time { return clock }
	out := make([]*kgo.Record, n)
	for i := range out {
		e := g.Next()
		b, _ := schemas.JSON{}.Append(nil, e)
		out[i] = &kgo.Record{Topic: "events.raw", Partition: int32(len(e.ResourceID) % 6), Key: []byte(e.ResourceID), Value: b, Offset: int64(i)}
	}
	return out
}

func decoded(b *testing.B, recs []*kgo.Record) []*schemas.Event {
	b.Helper()
	out := make([]*schemas.Event, len(recs))
	for i, r := range recs {
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = e
	}
	return out
}

func reportEvents(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkStageDecode(b *testing.B) {
	recs := benchRecords(4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := (schemas.JSON{Borrow: true}).Decode(recs[i%len(recs)].Value); err != nil {
			b.Fatal(err)
		}
	}
	reportEvents(b)
}

func BenchmarkStageFilter(b *testing.B) {
	recs := benchRecords(4096)
	evs := decoded(b, recs)
	f, err := filter.Compile(filter.Config{EventTypes: []string{"recipient.*", "lead.*", "deal.*"}, Where: []filter.Rule{{Expr: `outcome != "error" && duration_ms < 5000`}}})
	if err != nil {
		b.Fatal(err)
	}
	s := &FilterStage{F: f}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = s.Apply(recs[i%len(recs)], evs[i%len(evs)])
	}
	reportEvents(b)
}

func BenchmarkStageDedupe(b *testing.B) {
	recs := benchRecords(4096)
	evs := decoded(b, recs)
	d := NewDeduper("firehose.state", "events.dlq", 72*time.Hour, nil, time.Now, nil)
	for p := range int32(6) {
		d.parts.put(p, newDedupePart(time.Now()))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % len(recs)
		if j == 0 {
			d.End(true)
			d.parts.each(func(dp *dedupePart) { clear(dp.seen) }) // each pass over the corpus starts fresh
		}
		_, _ = d.Apply(recs[j], evs[j])
	}
	reportEvents(b)
}

func BenchmarkStageEnrich(b *testing.B) {
	recs := benchRecords(4096)
	evs := decoded(b, recs)
	en, err := NewEnricher(Enrich{
		Flows:    map[string]map[string]any{"flow_1_1": {"name": "Auto", "version": 3}, "flow_2_2": {"name": "Home", "version": 1}},
		Accounts: map[string]map[string]any{"acc_1": {"name": "Acme"}},
		Tags:     map[string]string{"env": "prod"},
	}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = en.Apply(recs[i%len(recs)], evs[i%len(evs)])
	}
	reportEvents(b)
}

func BenchmarkStageMask(b *testing.B) {
	recs := benchRecords(4096)
	m, err := NewMasker(MaskConfig{})
	if err != nil {
		b.Fatal(err)
	}
	evs := decoded(b, recs)
	orig := make([][]byte, len(evs))
	for i, e := range evs {
		orig[i] = e.LeadData
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % len(evs)
		evs[j].LeadData = orig[j]
		_, _ = m.Apply(recs[j], evs[j])
	}
	reportEvents(b)
}

func BenchmarkStageEncode(b *testing.B) {
	recs := benchRecords(4096)
	evs := decoded(b, recs)
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = schemas.JSON{}.Append(buf[:0], evs[i%len(evs)])
	}
	reportEvents(b)
}

// BenchmarkPipeline is the whole processor minus Kafka: decode, filter,
// dedupe, enrich, mask (the default rules) and encode.
func BenchmarkPipeline(b *testing.B) { benchPipeline(b, benchRecords(8192)) }

// BenchmarkPipelineTracing is BenchmarkPipeline with tracing on: every
// record carries a sampled traceparent, and spans go to an exporter that
// drops them. Compare with BenchmarkPipeline for what tracing costs; off,
// it costs nothing (no span is made, no header parsed).
func BenchmarkPipelineTracing(b *testing.B) {
	recs := benchRecords(8192)
	for _, r := range recs {
		r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}
	}
	tracing.Use(sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter())))
	defer tracing.Use(nil)
	benchPipeline(b, recs)
}

func benchPipeline(b *testing.B, recs []*kgo.Record) {
	var cfg testDoc
	cfg.Processor.Filter = filter.Config{EventTypes: []string{"recipient.*", "lead.*", "deal.*", "filter.*", "feedback.*"}, Where: []filter.Rule{{Expr: `outcome != "error"`}}}
	cfg.Processor.Enrich = Enrich{Tags: map[string]string{"env": "prod"}, Flows: map[string]map[string]any{"flow_1_1": {"name": "Auto"}}}
	cfg.Defaults()
	p, err := New(cfg.options())
	if err != nil {
		b.Fatal(err)
	}
	for part := range int32(6) {
		p.dedupe.parts.put(part, newDedupePart(time.Now()))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % len(recs)
		if j == 0 {
			p.dedupe.End(true)
			p.dedupe.parts.each(func(dp *dedupePart) { clear(dp.seen) })
		}
		p.pipe.Process(recs[j])
	}
	reportEvents(b)
}

// BenchmarkDedupeMemory measures the heap each tracked resource costs: it
// fills one partition's state with b.N resources ids like the generator's
// (lead_000123) and reports bytes per resource.
func BenchmarkDedupeMemory(b *testing.B) {
	d := NewDeduper("firehose.state", "events.dlq", 72*time.Hour, nil, time.Now, nil)
	dp := newDedupePart(time.Now())
	d.parts.put(0, dp)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("lead_%09d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dp.seen[ids[i]] = seqEntry{seq: int64(i), at: 1}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if b.N >= 100000 {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-bytes/resource")
	}
	runtime.KeepAlive(dp)
}
