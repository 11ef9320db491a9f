package connectors_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/testenv"
)

// latencies records each live event's delivery latency: from its
// timestamp, set when it was produced, to the destination's
// acknowledgement.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) Delivered(b *connectors.Batch, skip func(int) bool, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ts := range b.Times {
		l.d = append(l.d, at.Sub(ts))
	}
}

func (l *latencies) Failed(bool) {}

func (l *latencies) Dropped(string, int) {}

func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.d
	l.d = nil
	slices.Sort(d)
	return d
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(float64(len(d)-1)*p)].Round(time.Millisecond)
}

// BenchmarkLiveLatencyDuringReplay measures a connector's live delivery
// latency (gzip NDJSON files, 1 s batches) under 2,000 events/s of live
// traffic, first alone, then while a replay job re-delivers the 300,000
// events before it, and reports p50 and p99 of each and how long the job
// took. Broker, producer, live worker and job share this process.
func BenchmarkLiveLatencyDuringReplay(b *testing.B) {
	defer func(d time.Duration) { connectors.ReplayPoll = d }(connectors.ReplayPoll)
	for b.Loop() {
		br := testenv.Start(b).Broker
		cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.DefaultProduceTopic("events"), kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		testenv.CreateTopics(b, cl, map[string]int32{"events": 6, "events.dlq": 1})
		g := generator.New(9, 5000)
		g.DuplicateRate = 0
		record := func() *kgo.Record {
			e := g.Next()
			e.Timestamp = time.Now()
			v, _ := schemas.JSON{}.Append(nil, e)
			return &kgo.Record{Key: []byte(e.ResourceID), Value: v}
		}
		backlog := make([]*kgo.Record, 0, 300_000)
		for range cap(backlog) {
			backlog = append(backlog, record())
		}
		if err := cl.ProduceSync(context.Background(), backlog...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		backlog = nil
		from, until := topicRange(b, adm, "events")

		fc := file.Config{Dir: b.TempDir()}
		fc.Defaults()
		sink, err := file.New(fc)
		if err != nil {
			b.Fatal(err)
		}
		lat := &latencies{}
		o := connectors.Options{
			Connector: connectors.Config{Name: "lake", Topic: "events", Group: "lake", Encoding: "ndjson", Compression: "gzip",
				Batch: connectors.Bounds{MaxEvents: 100_000, MaxBytes: 5_000_000, MaxAge: time.Second}},
			DLQTopic: "events.dlq", EventsEncoding: "json", Sink: sink, Observer: lat,
			Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)},
		}
		// The live worker starts at the end: the backlog is the
		// replay's.
		var offs kadm.Offsets
		for p, end := range until {
			offs.Add(kadm.Offset{Topic: "events", Partition: p, At: end, LeaderEpoch: -1})
		}
		if _, err := adm.CommitOffsets(context.Background(), "lake", offs); err != nil {
			b.Fatal(err)
		}
		live, err := connectors.New(o)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 2)
		go func() { done <- live.Run(ctx) }()
		traffic := func(d time.Duration) {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for end := time.Now().Add(d); time.Now().Before(end); <-t.C {
				for range 20 {
					cl.Produce(ctx, record(), nil)
				}
			}
		}
		traffic(10 * time.Second)
		time.Sleep(2 * time.Second)
		alone := lat.take()

		connectors.ReplayPoll = 100 * time.Millisecond
		r, err := live.Replays(o.Kafka)
		if err != nil {
			b.Fatal(err)
		}
		id, err := connectors.SubmitReplay(context.Background(), adm, "lake", "events", from, until)
		if err != nil {
			b.Fatal(err)
		}
		go func() { done <- r.Run(ctx) }()
		jobStart := time.Now()
		var took time.Duration
		for took == 0 {
			traffic(time.Second)
			jobs, _ := connectors.ListReplays(context.Background(), adm, "lake")
			if len(jobs) == 1 && jobs[0].ID == id && jobs[0].Complete() {
				took = time.Since(jobStart)
			}
		}
		time.Sleep(2 * time.Second)
		during := lat.take()
		cancel()
		<-done
		<-done
		cl.Close()
		b.ReportMetric(float64(pct(alone, .5).Milliseconds()), "alone-p50-ms")
		b.ReportMetric(float64(pct(alone, .99).Milliseconds()), "alone-p99-ms")
		b.ReportMetric(float64(pct(during, .5).Milliseconds()), "replay-p50-ms")
		b.ReportMetric(float64(pct(during, .99).Milliseconds()), "replay-p99-ms")
		b.Logf("live latency alone: p50 %s p99 %s (%d events); during the replay of 300,000 events (%s): p50 %s p99 %s (%d events)",
			pct(alone, .5), pct(alone, .99), len(alone), took.Round(time.Millisecond), pct(during, .5), pct(during, .99), len(during))
	}
}
