package connectors_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	httpdest "github.com/firehose/firehose/connectors/http"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

// receiver is a webhook that records what it stored, per resource in
// arrival order, and can fail one partition's batches.
type receiver struct {
	mu        sync.Mutex
	byRes     map[string][]int64
	stored    int
	failPart  string // batch id infix "-events-N-" whose batches get 503
	failed    int
	delay     time.Duration
	flight    map[string]int // requests in flight per partition
	peakInOne int            // most requests in flight for one partition
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Firehose-Batch-Id")
	part := id[strings.Index(id, "-events-")+len("-events-"):]
	part = part[:strings.Index(part, "-")]
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.flight[part]++
	rc.peakInOne = max(rc.peakInOne, rc.flight[part])
	fail := rc.failPart != "" && strings.Contains(id, rc.failPart)
	if fail {
		rc.failed++
	}
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.flight[part]--
		rc.mu.Unlock()
	}()
	time.Sleep(rc.delay)
	if fail {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	ds, err := connectortest.Decode(body, "json", "none")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, d := range ds {
		rc.byRes[d.Event.ResourceID] = append(rc.byRes[d.Event.ResourceID], d.Event.Sequence)
		rc.stored++
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count() (stored, failed int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.stored, rc.failed
}

// webhookEnv is a broker with an events topic of 6 partitions holding
// evs, and a webhook receiver.
func webhookEnv(t *testing.T, n int, rc *receiver) (*embedded.Broker, []*schemas.Event, map[string]int32, *httptest.Server) {
	evs := generator.Unique(9, 300, n)
	br, _, partOf := eventsBroker(t, 6, evs)
	rc.byRes, rc.flight = map[string][]int64{}, map[string]int{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return br, evs, partOf, srv
}

func startWorker(t *testing.T, br *embedded.Broker, url string, mod func(*connectors.Options)) (*connectors.Worker, func()) {
	t.Helper()
	c := connectors.Config{Name: "hook", Topic: "events", Group: "hook", Encoding: "json", Compression: "none",
		Batch: connectors.Bounds{MaxEvents: 50, MaxBytes: 1 << 20, MaxAge: 200 * time.Millisecond},
		Retry: connectors.RetryPolicy{MaxAttempts: 100000, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}}
	hc := httpdest.Config{URL: url}
	hc.Defaults()
	o := connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json",
		Sink: httpdest.New(hc), Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr), kgo.SessionTimeout(6 * time.Second)}, ShutdownTimeout: 10 * time.Second}
	if mod != nil {
		mod(&o)
	}
	w, err := connectors.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func checkOrder(t *testing.T, rc *receiver, evs []*schemas.Event) {
	t.Helper()
	want := map[string][]int64{}
	for _, e := range evs {
		want[e.ResourceID] = append(want[e.ResourceID], e.Sequence)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for res, seqs := range want {
		got := rc.byRes[res]
		// At least once: a batch may come twice, but never behind a later
		// one of its resource.
		last := int64(-1)
		seen := map[int64]bool{}
		for _, s := range got {
			if s < last {
				t.Fatalf("resource %s: sequence %d arrived after %d: %v", res, s, last, got)
			}
			last = max(last, s)
			seen[s] = true
		}
		for _, s := range seqs {
			if !seen[s] {
				t.Fatalf("resource %s: sequence %d never arrived", res, s)
			}
		}
	}
}

// One partition whose batches keep failing (and are retried) holds no
// other partition: their events keep arriving. A second worker joining
// the group completes its rebalance while the retries go on, and once the
// destination recovers every event arrives, in order per resource.
func TestRetryingPartitionHoldsNeitherOthersNorRebalance(t *testing.T) {
	rc := &receiver{failPart: "-events-0-"}
	br, evs, partOf, srv := webhookEnv(t, 6000, rc)
	var inZero int
	for _, e := range evs {
		if partOf[e.ResourceID] == 0 {
			inZero++
		}
	}
	revoke := func(o *connectors.Options) { o.RevokeTimeout = time.Second }
	a, _ := startWorker(t, br, srv.URL, revoke)
	wait.Eventually(t, time.Minute, "every event of partitions 1-5 stored while partition 0 fails", func() bool {
		stored, failed := rc.count()
		return stored == len(evs)-inZero && failed >= 3
	})

	b, _ := startWorker(t, br, srv.URL, revoke)
	wait.Eventually(t, time.Minute, "the rebalance to complete while partition 0 retries", func() bool { return a.Ready() && b.Ready() })
	if _, failed := rc.count(); failed < 3 {
		t.Fatal("partition 0 was not failing")
	}

	rc.mu.Lock()
	rc.failPart = ""
	rc.mu.Unlock()
	wait.Eventually(t, time.Minute, "every event stored once the destination recovers", func() bool { stored, _ := rc.count(); return stored >= len(evs) })
	checkOrder(t, rc, evs)
}

// With a destination that answers slowly, a partition has more than one
// batch in flight (one per lane), and each resource's events still
// arrive in order.
func TestOrderKeptWithSeveralBatchesOfAPartitionInFlight(t *testing.T) {
	rc := &receiver{delay: 30 * time.Millisecond}
	br, evs, _, srv := webhookEnv(t, 6000, rc)
	startWorker(t, br, srv.URL, nil)
	wait.Eventually(t, time.Minute, "every event stored", func() bool { stored, _ := rc.count(); return stored >= len(evs) })
	checkOrder(t, rc, evs)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.peakInOne < 2 {
		t.Fatalf("at most %d batch of one partition was in flight at once; the test needs several", rc.peakInOne)
	}
}

// gate is a sink that holds every delivery until opened.
type gate struct {
	mu        sync.Mutex
	open      chan struct{}
	delivered int
}

func (g *gate) Deliver(ctx context.Context, b *connectors.Batch) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	g.delivered += len(b.Events)
	g.mu.Unlock()
	return nil
}
func (g *gate) Close(context.Context) error { return nil }
func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.delivered
}

// While deliveries cannot finish, the worker reads on only until its
// batches hold max_buffered_bytes, then pauses fetching; once they finish
// it reads the rest, and everything is delivered.
func TestFetchingPausesAtTheBufferCap(t *testing.T) {
	br, evs, _, srv := webhookEnv(t, 20000, &receiver{})
	srv.Close()
	g := &gate{open: make(chan struct{})}
	w, _ := startWorker(t, br, "", func(o *connectors.Options) {
		o.Sink = g
		o.Connector.MaxBufferedBytes = 256 << 10 // about 330 events of ~700 bytes
		o.Connector.Batch.MaxBytes = 32 << 10
	})
	wait.Eventually(t, time.Minute, "the worker to read up to its cap", func() bool { return w.Stats().Consumed.Load() > 0 })
	time.Sleep(time.Second) // it would read all 20,000 in this time without the cap
	consumed := w.Stats().Consumed.Load()
	if consumed >= int64(len(evs)) {
		t.Fatalf("consumed all %d events while nothing could be delivered: fetching never paused", consumed)
	}
	close(g.open)
	wait.Eventually(t, time.Minute, "every event delivered once deliveries finish", func() bool { return g.count() >= len(evs) })
	t.Logf("consumed %d of %d events while deliveries were held", consumed, len(evs))
}
