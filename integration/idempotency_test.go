package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	httpdest "github.com/firehose/firehose/connectors/http"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

// keyedReceiver is a webhook receiver that does what the README tells
// receivers to do: it drops a batch whose idempotency key it has already
// stored.
type keyedReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	stored map[string][]connectortest.Delivered // by idempotency key
}

func (k *keyedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	body, _ := io.ReadAll(r.Body)
	k.mu.Lock()
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
	recv := &keyedReceiver{t: t, stored: map[string][]connectortest.Delivered{}}
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
	produceTo(0, evs[:10])
	produceTo(1, evs[100:])

	// The group's commits fail while the first worker runs: every batch
	// it delivers is acknowledged and none committed, as when a worker
	// dies between the two.
	var commitsFail atomic.Bool
	commitsFail.Store(true)
	b.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		if !commitsFail.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

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

	// Every batch of both partitions is acknowledged, nothing committed;
	// then the worker crashes.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, 10, -1) }()
	wait.Eventually(t, 60*time.Second, "both partitions' events stored", func() bool { return len(recv.events()) == 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	commitsFail.Store(false)

	// 90 more events; the next worker reads partition 0 again from offset
	// 0 and cuts batches of up to 100.
	produceTo(0, evs[10:100])
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- run(ctx, 100, 30*time.Second) }()
	wait.Eventually(t, 60*time.Second, "every event stored by the receiver", func() bool { return len(recv.events()) == len(evs) })
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
	copies := map[string]int{}
	for key, ds := range recv.stored {
		t.Logf("%s: %d events", key, len(ds))
		for _, d := range ds {
			copies[d.Event.EventID]++
		}
	}
	if copies[evs[0].EventID] < 2 {
		t.Fatal("partition 0 was not read again from offset 0 after the crash: its first events were committed, so the test proved nothing")
	}
}
