package integration

import (
	"context"
	"fmt"
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
	"github.com/firehose/firehose/internal/generator"
	"github.com/firehose/firehose/schemas"
)

// keyedReceiver is a webhook receiver that does what the README tells
// receivers to do: it drops a batch whose idempotency key it has already
// stored. While hold is set it holds partition 1's requests until their
// client goes away.
type keyedReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	stored map[string][]connectortest.Delivered // by idempotency key
	held   chan struct{}                        // closed when a partition 1 request is being held
	hold   bool
}

func (k *keyedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	body, _ := io.ReadAll(r.Body)
	k.mu.Lock()
	if k.hold && strings.Contains(key, "-events-1-") {
		k.mu.Unlock()
		select {
		case <-k.held:
		default:
			close(k.held)
		}
		<-r.Context().Done() // the answer never comes: the worker crashes first
		return
	}
	defer k.mu.Unlock()
	if _, ok := k.stored[key]; !ok {
		ds, err := connectortest.Decode(body, "ndjson", "none")
		if err != nil {
			k.t.Error(err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k.stored[key] = ds
	}
	w.WriteHeader(http.StatusNoContent)
}

// events returns the distinct event ids the receiver stored.
func (k *keyedReceiver) events() map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := map[string]bool{}
	for _, ds := range k.stored {
		for _, d := range ds {
			ids[d.Event.EventID] = true
		}
	}
	return ids
}

// A receiver that de-duplicates by idempotency key loses nothing when a
// worker crashes between a destination's acknowledgement and the commit and
// the next one cuts different batches from the same offset. Before batch
// ids named their last offset and content, the restarted worker's batch of
// 100 events reused the key of the acknowledged batch of 10, and the
// receiver dropped 90 events.
func TestIdempotencyKeysSurviveACrashBetweenAckAndCommit(t *testing.T) {
	b := startBroker(t)
	recv := &keyedReceiver{t: t, stored: map[string][]connectortest.Delivered{}, held: make(chan struct{}), hold: true}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: hook
    type: http
    batch: {max_events: 10, max_age: 300ms}
    retry: {max_attempts: 1000, initial_backoff: 50ms, max_backoff: 200ms}
    http:
      url: %s/events
`, b.Addr, srv.URL), nil)
	applyTopology(t, cfg)

	evs := generator.Unique(31, 20, 110)
	produceTo := func(partition int32, evs []*schemas.Event) {
		cl := client(t, cfg, kgo.DefaultProduceTopic(cfg.Topology.Events.Name), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for _, e := range evs {
			v, _ := schemas.JSON{}.Append(nil, e)
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(e.ResourceID), Value: v, Partition: partition}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Both partitions' first batches are full before the worker starts,
	// so one poll seals both and one round delivers them together.
	produceTo(0, evs[:10])
	produceTo(1, evs[100:])

	run := func(ctx context.Context, batch int, shutdown time.Duration) error {
		c := cfg.Connectors[0]
		c.Batch.MaxEvents = batch
		w, err := connectors.New(connectors.Options{
			Connector: c, DLQTopic: cfg.Topology.DLQ.Name, EventsEncoding: "json",
			Sink: httpdest.New(*c.Destination.(*httpdest.Config)), Kafka: []kgo.Opt{kgo.SeedBrokers(b.Addr)},
			ShutdownTimeout: shutdown,
		})
		if err != nil {
			return err
		}
		return w.Run(ctx)
	}

	// Partition 0's batch of 10 is acknowledged; partition 1's answer is
	// held, so nothing is committed; then the worker crashes.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, 10, -1) }()
	waitFor(t, 60*time.Second, "partition 0's batch stored and partition 1's held", func() bool {
		select {
		case <-recv.held:
			return len(recv.events()) == 10
		default:
			return false
		}
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	recv.hold = false
	recv.mu.Unlock()

	// 90 more events; the next worker reads partition 0 again from offset
	// 0 and cuts one batch of 100.
	produceTo(0, evs[10:100])
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- run(ctx, 100, 30*time.Second) }()
	waitFor(t, 60*time.Second, "every event stored by the receiver", func() bool { return len(recv.events()) == len(evs) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := recv.events()
	for _, e := range evs {
		if !got[e.EventID] {
			t.Fatalf("the receiver lost %s", e.EventID)
		}
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	redelivered := false
	for key, ds := range recv.stored {
		t.Logf("%s: %d events", key, len(ds))
		redelivered = redelivered || strings.HasPrefix(key, "hook-events-0-0-") && len(ds) > 10
	}
	if !redelivered {
		t.Fatal("partition 0 was not read again from offset 0 after the crash: its first batch was committed, so the test proved nothing")
	}
}
