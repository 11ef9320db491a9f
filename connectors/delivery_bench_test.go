package connectors_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	httpdest "github.com/firehose/firehose/connectors/http"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/versitygw"
)

// inFlight counts requests under way and remembers the most seen.
type inFlight struct{ now, peak atomic.Int64 }

func (f *inFlight) enter() {
	n := f.now.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
}
func (f *inFlight) leave() { f.now.Add(-1) }

// deliverAll runs a connector until it delivered n events and returns
// how long that took.
func deliverAll(b *testing.B, br *embedded.Broker, c connectors.Config, sink connectors.Sink, n int) time.Duration {
	c.Name, c.Topic, c.Group = "bench", "events", "bench-"+time.Now().Format("150405.000000")
	w, err := connectors.New(connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json",
		Sink: sink, Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	for w.Stats().Delivered.Load() < int64(n) {
		select {
		case err := <-done:
			b.Fatalf("connector stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	took := time.Since(start)
	cancel()
	<-done
	return took
}

// topicWith returns an embedded broker whose topic "events" (6
// partitions) holds n generated events keyed by resource, and the events.
func topicWith(b *testing.B, n int) (*embedded.Broker, []*schemas.Event) {
	evs := generator.Unique(5, 2000, n)
	br, _, _ := eventsBroker(b, 6, evs)
	return br, evs
}

// BenchmarkWebhook50ms: 100,000 events in 100-event batches to a webhook
// that answers each request after 50 ms, with the default window (32 in
// flight) and with max_in_flight: auto (up to 32). It reports events/s,
// the most requests seen in flight, and checks per-resource order at the
// receiver.
func BenchmarkWebhook50ms(b *testing.B) {
	const n = 100000
	br, evs := topicWith(b, n)
	for _, w := range []struct {
		name     string
		inFlight connectors.InFlight
	}{{"fixed32", 0}, {"auto", connectors.InFlightAuto}} {
		b.Run(w.name, func(b *testing.B) { webhook50ms(b, br, evs, w.inFlight) })
	}
}

func webhook50ms(b *testing.B, br *embedded.Broker, evs []*schemas.Event, window connectors.InFlight) {
	n := len(evs)
	for b.Loop() {
		var flight inFlight
		var mu sync.Mutex
		last := map[string]int64{}
		outOfOrder := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			flight.enter()
			defer flight.leave()
			body, _ := io.ReadAll(r.Body)
			time.Sleep(50 * time.Millisecond)
			ds, err := connectortest.Decode(body, "json", "none")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			for _, d := range ds {
				if d.Event.Sequence <= last[d.Event.ResourceID] {
					outOfOrder++
				}
				last[d.Event.ResourceID] = d.Event.Sequence
			}
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}))
		hc := httpdest.Config{URL: srv.URL}
		hc.Defaults()
		took := deliverAll(b, br, connectors.Config{Encoding: "json", Compression: "none", MaxInFlight: window,
			Batch: connectors.Bounds{MaxEvents: 100, MaxBytes: 1 << 20, MaxAge: time.Second}}, httpdest.New(hc), len(evs))
		srv.Close()
		if outOfOrder > 0 {
			b.Fatalf("%d events arrived before an earlier event of their resource", outOfOrder)
		}
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(float64(flight.peak.Load()), "max-in-flight")
	}
}

// BenchmarkS3Delay50ms: the same events to S3 (versitygw behind a proxy
// that holds every request 50 ms) in 5 MB objects.
func BenchmarkS3Delay50ms(b *testing.B) {
	const n = 100000
	br, evs := topicWith(b, n)
	gw := versitygw.Start(b)
	target, _ := url.Parse(gw.Endpoint)
	var flight inFlight
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flight.enter()
		defer flight.leave()
		time.Sleep(50 * time.Millisecond)
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	for i := 0; b.Loop(); i++ {
		bucket := gw.Bucket(b, "delay"+time.Now().Format("150405")+string(rune('a'+i%26)))
		cfg := s3dest.Config{Bucket: bucket, Endpoint: proxy.URL, PathStyle: true, Region: "us-east-1", AccessKeyID: gw.Access, SecretAccessKey: gw.Secret}
		cfg.Defaults()
		sink, err := s3dest.New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		took := deliverAll(b, br, connectors.Config{Encoding: "ndjson", Compression: "gzip",
			Batch: connectors.Bounds{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: time.Second}}, sink, len(evs))
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(float64(flight.peak.Load()), "max-in-flight")
	}
}
