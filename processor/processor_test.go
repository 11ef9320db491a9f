package processor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

type env struct {
	*testenv.Env
	t   *testing.T
	cfg *testDoc
}

func newEnv(t *testing.T, processorYAML string) *env {
	t.Helper()
	te := testenv.Start(t)
	d := parseDoc(t, processorYAML, nil)
	te.Apply(d.Topology)
	return &env{Env: te, t: t, cfg: d}
}

func (e *env) client(opts ...kgo.Opt) *kgo.Client { return e.Client(opts...) }

// produce writes events to the raw topic, keyed by resource, in order.
func (e *env) produce(evs ...*schemas.Event) {
	e.t.Helper()
	cl := e.client(kgo.DefaultProduceTopic(e.cfg.Topology.Raw.Name))
	var recs []*kgo.Record
	for _, ev := range evs {
		b, _ := schemas.JSON{}.Append(nil, ev)
		recs = append(recs, &kgo.Record{Key: []byte(ev.ResourceID), Value: b})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

type running struct {
	p      *Processor
	cancel context.CancelFunc
	done   chan error
}

// start runs a processor with its own transactional id.
func (e *env) start(txnID string, mod func(*Options)) *running {
	e.t.Helper()
	cfg := *e.cfg
	cfg.Processor.TransactionalID = txnID
	o := cfg.options()
	o.Kafka, o.maxPoll = []kgo.Opt{kgo.SeedBrokers(e.Broker.Addr)}, 500
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("processor did not stop within 30s")
	}
	return nil
}

// events reads the events topic read_committed until it holds n records
// and nothing more arrives for a moment, and returns them decoded.
func (e *env) events(n int) []*schemas.Event {
	e.t.Helper()
	cl := e.client(kgo.ConsumeTopics(e.cfg.Topology.Events.Name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var out []*schemas.Event
	deadline := time.Now().Add(60 * time.Second)
	quietUntil := time.Time{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			ev, err := schemas.JSON{}.Decode(r.Value)
			if err != nil {
				e.t.Fatalf("events holds an undecodable record: %v", err)
			}
			if string(r.Key) != ev.ResourceID {
				e.t.Fatalf("record keyed %q carries resource %q", r.Key, ev.ResourceID)
			}
			out = append(out, ev)
			got++
		})
		if len(out) >= n {
			if got > 0 {
				quietUntil = time.Now().Add(time.Second) // wait for extras that must not come
			}
			if time.Now().After(quietUntil) {
				return out
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("events holds %d records after 60s, want %d", len(out), n)
		}
	}
}

func key(ev *schemas.Event) string { return fmt.Sprintf("%s/%d", ev.ResourceID, ev.Sequence) }

// assertOnceInOrder checks that got holds each of want exactly once and,
// per resource, in increasing sequence order.
func assertOnceInOrder(t *testing.T, want, got []*schemas.Event) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]int64{}
	for _, ev := range got {
		seen[key(ev)]++
		if prev, ok := last[ev.ResourceID]; ok && ev.Sequence <= prev {
			t.Fatalf("%s: sequence %d after %d", ev.ResourceID, ev.Sequence, prev)
		}
		last[ev.ResourceID] = ev.Sequence
	}
	for _, ev := range want {
		if seen[key(ev)] != 1 {
			t.Fatalf("%s emitted %d times, want once", key(ev), seen[key(ev)])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("emitted %d events, want %d", len(got), len(want))
	}
}

func TestFilterKeepsOnlyMatchingEvents(t *testing.T) {
	e := newEnv(t, `
processor:
  filter:
    event_types: ["recipient.*", "lead.*"]
    exclude_event_types: ["lead.updated"]
    where:
      - expr: 'metadata.price > 20'
`)
	in := generator.Unique(1, 100, 2000)
	var want []*schemas.Event
	for _, ev := range in {
		var m struct{ Price float64 }
		_ = json.Unmarshal(ev.Metadata, &m)
		if (strings.HasPrefix(ev.EventType, "recipient.") || strings.HasPrefix(ev.EventType, "lead.")) && ev.EventType != "lead.updated" && m.Price > 20 {
			want = append(want, ev)
		}
	}
	if len(want) == 0 || len(want) == len(in) {
		t.Fatalf("the filter should keep some events and drop others; keeps %d of %d", len(want), len(in))
	}
	r := e.start("p1", nil)
	e.produce(in...)
	got := e.events(len(want))
	assertOnceInOrder(t, want, got)
	if f := r.p.Stats().Filtered.Load(); f != int64(len(in)-len(want)) {
		t.Fatalf("Filtered = %d, want %d", f, len(in)-len(want))
	}
}

func TestDuplicatesEmittedOnceAcrossRestartAndRebalance(t *testing.T) {
	e := newEnv(t, "")
	in := generator.Unique(2, 200, 3000)

	// Before a restart: the first half, each event twice in a row.
	a := e.start("p1", nil)
	var first []*schemas.Event
	for _, ev := range in[:1500] {
		first = append(first, ev, ev)
	}
	e.produce(first...)
	e.events(1500)
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	// After the restart: duplicates of the first half again, then new
	// events.
	a = e.start("p1", nil)
	e.produce(in[:1500]...)
	e.produce(in[1500:2200]...)
	e.events(2200)

	// A second instance joins; partitions move between them. Then
	// duplicates of everything so far, and the rest.
	b := e.start("p2", nil)
	wait.Eventually(t, 30*time.Second, "both instances own partitions", func() bool { return a.p.Ready() && b.p.Ready() })
	e.produce(in[:2200]...)
	e.produce(in[2200:]...)
	got := e.events(len(in))
	assertOnceInOrder(t, in, got)
	dups := a.p.Stats().Deduplicated.Load() + b.p.Stats().Deduplicated.Load()
	if dups < 2200 {
		t.Fatalf("counted %d duplicates dropped after the restart, want at least 2200", dups)
	}
}

func TestMaskedValuesNeverReachEvents(t *testing.T) {
	e := newEnv(t, "")
	in := generator.Unique(3, 300, 2000)
	var secrets []string
	for _, ev := range in {
		var ld map[string]any
		_ = json.Unmarshal(ev.LeadData, &ld)
		for _, k := range []string{"ssn", "email", "phone", "first_name", "last_name"} {
			secrets = append(secrets, `"`+ld[k].(string)+`"`)
		}
	}
	r := e.start("p1", nil)
	e.produce(in...)
	got := e.events(len(in))
	// The metric counts values, committed with the events.
	wait.Eventually(t, 30*time.Second, fmt.Sprintf("%d values counted masked", len(secrets)), func() bool { return r.p.Stats().Masked.Load() == int64(len(secrets)) })
	var all strings.Builder
	for _, ev := range got {
		b, _ := schemas.JSON{}.Append(nil, ev)
		all.Write(b)
	}
	whole := all.String()
	for _, s := range secrets {
		if strings.Contains(whole, s) {
			t.Fatalf("the events topic holds the unmasked value %s", s)
		}
	}
	if !strings.Contains(whole, `"ssn":"***-**-`) || !strings.Contains(whole, `***@example.com"`) {
		t.Fatalf("no masked values in the output")
	}
}

func TestEnrichmentFromConfigAndTopic(t *testing.T) {
	e := newEnv(t, `
processor:
  enrich:
    flows:
      flow_1_1: {name: Auto Leads, version: 3}
    accounts:
      acc_1: {name: Acme, tier: gold}
    tags: {env: test}
    topic: firehose.reference
`)
	if err := e.Broker.CreateTopic("firehose.reference", 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	ref := e.client(kgo.DefaultProduceTopic("firehose.reference"))
	if err := ref.ProduceSync(context.Background(),
		&kgo.Record{Key: []byte("flow:flow_2_1"), Value: []byte(`{"name":"From Topic","version":7}`)},
		&kgo.Record{Key: []byte("account:acc_1"), Value: []byte(`{"name":"Acme","tier":"platinum"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	e.start("p1", func(o *Options) { o.Now = func() time.Time { return clock } })
	in := generator.Unique(4, 50, 500)
	for _, ev := range in {
		ev.Timestamp = clock.Add(-1500 * time.Millisecond)
	}
	e.produce(in...)
	got := e.events(len(in))
	var sawFlow, sawTopicFlow bool
	for _, ev := range got {
		var en struct {
			Flow        map[string]any
			Account     map[string]any
			Tags        map[string]string
			ProcessedAt string `json:"processed_at"`
			LatencyMS   int64  `json:"latency_ms"`
		}
		if err := json.Unmarshal(ev.Extra.Get(EnrichmentKey), &en); err != nil {
			t.Fatalf("no enrichment on %s: %v", key(ev), err)
		}
		if en.Tags["env"] != "test" || en.ProcessedAt != "2030-01-01T00:00:01.000Z" || en.LatencyMS != 1500 {
			t.Fatalf("enrichment of %s: %+v", key(ev), en)
		}
		switch ev.FlowID {
		case "flow_1_1":
			sawFlow = en.Flow["name"] == "Auto Leads" && en.Flow["version"] == 3.0
		case "flow_2_1":
			sawTopicFlow = en.Flow["name"] == "From Topic"
		}
		if ev.AccountID == "acc_1" && en.Account["tier"] != "platinum" {
			t.Fatalf("the reference topic did not override the account: %+v", en.Account)
		}
	}
	if !sawFlow || !sawTopicFlow {
		t.Fatalf("flow enrichment missing: from config %v, from topic %v", sawFlow, sawTopicFlow)
	}
}

func TestOrderAcrossTwoInstances(t *testing.T) {
	e := newEnv(t, "")
	in := generator.Unique(5, 500, 6000)
	a := e.start("p1", nil)
	b := e.start("p2", nil)
	wait.Eventually(t, 30*time.Second, "both instances own partitions", func() bool { return a.p.Ready() && b.p.Ready() })
	for i := 0; i < len(in); i += 1000 {
		e.produce(in[i : i+1000]...)
	}
	got := e.events(len(in))
	assertOnceInOrder(t, in, got)
	if a.p.Stats().Emitted.Load() == 0 || b.p.Stats().Emitted.Load() == 0 {
		t.Fatalf("one instance did all the work: %d and %d", a.p.Stats().Emitted.Load(), b.p.Stats().Emitted.Load())
	}
}

var errCrash = errors.New("simulated crash")

func TestCrashBeforeCommitIsExactlyOnce(t *testing.T) {
	e := newEnv(t, "")
	in := generator.Unique(6, 300, 4000)
	e.produce(in...)

	// The third transaction's records are produced, then the process
	// dies before committing: no abort, no offset commit.
	var mu sync.Mutex
	n := 0
	a := e.start("p1", func(o *Options) {
		o.beforeEnd = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if n++; n == 3 {
				return errCrash
			}
			return nil
		}
	})
	select {
	case err := <-a.done:
		close(a.done)
		if !errors.Is(err, errCrash) {
			t.Fatalf("processor ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the crash hook never ran")
	}

	// The replacement takes the same transactional id, which fences the
	// dead one and aborts its open transaction.
	e.start("p1", nil)
	got := e.events(len(in))
	assertOnceInOrder(t, in, got)
}

func TestRedrivenEventPassesDedupe(t *testing.T) {
	e := newEnv(t, "")
	e.start("p1", nil)
	mk := func(seq int64) *schemas.Event {
		return &schemas.Event{EventID: fmt.Sprintf("e%d", seq), Timestamp: time.Now().UTC().Truncate(time.Millisecond), AccountID: "acc_1", ResourceID: "lead_1", Sequence: seq, EventType: "lead.created"}
	}
	e.produce(mk(1), mk(2), mk(3))
	e.events(3)
	// Sequence 2 again: once as a plain duplicate, once redriven from the
	// DLQ by an operator (the DLQ holds it, dead-lettered by the
	// processor), and once with a forged redrive header naming a dead
	// letter that is not it.
	b, _ := schemas.JSON{}.Append(nil, mk(2))
	cl := e.client(kgo.DefaultProduceTopic(e.cfg.Topology.Raw.Name))
	dead := dlq.Record(e.cfg.Topology.DLQ.Name, &kgo.Record{Key: []byte("lead_1"), Value: b}, dlq.Reason{Stage: "processor", Class: "stage", Message: "m"}, time.Now())
	res := cl.ProduceSync(context.Background(), dead,
		dlq.Record(e.cfg.Topology.DLQ.Name, &kgo.Record{Key: []byte("lead_1"), Value: []byte("other")}, dlq.Reason{Stage: "processor", Class: "stage", Message: "m"}, time.Now()))
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	at := func(r *kgo.Record) []byte { return fmt.Appendf(nil, "%d:%d", r.Partition, r.Offset) }
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Key: []byte("lead_1"), Value: b},
		&kgo.Record{Key: []byte("lead_1"), Value: b, Headers: []kgo.RecordHeader{{Key: dlq.HeaderRedrive, Value: at(res[0].Record)}}},
		&kgo.Record{Key: []byte("lead_1"), Value: b, Headers: []kgo.RecordHeader{{Key: dlq.HeaderRedrive, Value: at(res[1].Record)}}},
		&kgo.Record{Key: []byte("lead_1"), Value: b, Headers: []kgo.RecordHeader{{Key: dlq.HeaderRedrive, Value: []byte("0:999999")}}},
		&kgo.Record{Key: []byte("lead_1"), Value: func() []byte { v, _ := schemas.JSON{}.Append(nil, mk(4)); return v }()},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := e.events(5)
	var seqs []int64
	for _, ev := range got {
		seqs = append(seqs, ev.Sequence)
	}
	if fmt.Sprint(seqs) != "[1 2 3 2 4]" {
		t.Fatalf("sequences emitted %v, want [1 2 3 2 4]: the plain and the forged duplicates dropped, the redriven one kept, and the state not moved back", seqs)
	}
}

// A raw record just under the topic's size limit becomes a dead letter
// that still fits the DLQ topic (its value cut, its size and SHA-256 in
// headers), so its transaction commits and the events after it on the same
// partition arrive. Before dead letters were cut to fit, the producer
// refused the dead letter, the transaction aborted, the poll repeated, and
// the partition stopped for good.
func TestRecordJustUnderTheSizeLimitDoesNotStopItsPartition(t *testing.T) {
	e := newEnv(t, "")
	limit := e.cfg.Topology.DLQ.MaxRecordBytes()
	huge := bytes.Repeat([]byte("x"), limit-300)
	cl := e.client(kgo.DefaultProduceTopic(e.cfg.Topology.Raw.Name), kgo.ProducerBatchMaxBytes(int32(limit)))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("lead_1"), Value: huge}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	after := &schemas.Event{EventID: "after", Timestamp: time.Now().UTC().Truncate(time.Millisecond), AccountID: "acc_1", ResourceID: "lead_1", Sequence: 1, EventType: "lead.created"}
	e.produce(after)
	e.start("poison", nil)

	if got := e.events(1); got[0].EventID != "after" {
		t.Fatalf("events holds %s", got[0].EventID)
	}
	dlqCl := e.client(kgo.ConsumeTopics(e.cfg.Topology.DLQ.Name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fs := dlqCl.PollFetches(ctx)
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d dead letters", len(recs))
	}
	r := recs[0]
	sum := sha256.Sum256(huge)
	if dlq.Header(r, dlq.HeaderClass) != schemas.ClassOversize || dlq.Header(r, dlq.HeaderValueSize) != strconv.Itoa(len(huge)) ||
		dlq.Header(r, dlq.HeaderValueSHA256) != hex.EncodeToString(sum[:]) || !bytes.HasPrefix(huge, r.Value) || len(r.Value) >= len(huge) {
		t.Fatalf("dead letter: %d bytes of value, headers %v", len(r.Value), r.Headers)
	}
}

// A dedupe state that cannot be read for a while (here the broker refuses
// to list the state topic's offsets 40 times; in the field, a process out
// of file descriptors failing to dial) is retried with backoff: the
// processor goes on and emits every event once the state reads. Before,
// the first failure ended the processor, and with it the whole process.
func TestStateLoadFailuresAreRetried(t *testing.T) {
	e := newEnv(t, "")
	var failed atomic.Int64
	state := e.cfg.Topology.State.Name
	e.Broker.ControlKey(int16(kmsg.ListOffsets), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		e.Broker.KeepControl()
		req := kreq.(*kmsg.ListOffsetsRequest)
		if len(req.Topics) == 0 || req.Topics[0].Topic != state || failed.Load() >= 40 {
			return nil, nil, false
		}
		failed.Add(1)
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewListOffsetsResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewListOffsetsResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.UnknownServerError.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	var evs []*schemas.Event
	for i := range 30 {
		evs = append(evs, &schemas.Event{EventID: fmt.Sprintf("e%d", i), Timestamp: time.Now().UTC().Truncate(time.Millisecond), AccountID: "acc_1",
			ResourceID: fmt.Sprintf("lead_%d", i%7), Sequence: int64(i), EventType: "lead.created"})
	}
	e.produce(evs...)
	r := e.start("state-retry", nil)
	assertOnceInOrder(t, evs, e.events(len(evs)))
	if failed.Load() < 40 {
		t.Fatalf("only %d state reads failed; the test proved nothing", failed.Load())
	}
	select {
	case err := <-r.done:
		t.Fatalf("the processor stopped: %v", err)
	default:
	}
}

// A producer's headers (its trace context, its own) reach the event in
// events; Firehose's own headers never do; processor.headers narrows them.
func TestHeadersAreCarriedToEvents(t *testing.T) {
	p := &Pipeline{In: schemas.JSON{}, Out: schemas.JSON{}, EventsTopic: "events", DLQTopic: "dlq", MaxEventBytes: 1 << 20, Now: time.Now}
	v := []byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t"}`)
	in := &kgo.Record{Key: []byte("r"), Value: v, Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		{Key: "x-tenant", Value: []byte("acme")},
		{Key: "internal-only", Value: []byte("1")},
		{Key: dlq.HeaderConnector, Value: []byte("hook")},
	}}
	out, _ := p.Process(in)
	if got := fmt.Sprint(out.Headers); !strings.Contains(got, "traceparent") || !strings.Contains(got, "x-tenant") || !strings.Contains(got, "internal-only") || strings.Contains(got, "firehose.") {
		t.Fatalf("all but Firehose's: %v", out.Headers)
	}
	p.Headers = []string{"traceparent", "tracestate", "x-*"}
	out, _ = p.Process(in)
	if got := fmt.Sprint(out.Headers); !strings.Contains(got, "traceparent") || !strings.Contains(got, "x-tenant") || strings.Contains(got, "internal-only") {
		t.Fatalf("allow-list: %v", out.Headers)
	}
}

// An idle processor still comes round its loop, so its heartbeat tells
// idle from stuck.
func TestIdleProcessorBeats(t *testing.T) {
	e := newEnv(t, "")
	beat := heartbeat.New("the processor")
	r := e.start("p1", func(o *Options) { o.Beat = beat })
	wait.Eventually(t, 30*time.Second, "the processor to own its partitions", r.p.Ready)
	var beats int
	last := beat.Since(time.Now())
	wait.Eventually(t, 20*time.Second, "an idle processor to beat twice", func() bool {
		if d := beat.Since(time.Now()); d < last {
			beats++
		}
		last = beat.Since(time.Now())
		return beats >= 2
	})
}

// The processor writes events with topology.events.compression.
func TestEventsAreWrittenWithTheConfiguredCompression(t *testing.T) {
	e := newEnv(t, "topology:\n  events: {compression: zstd}\n")
	e.start("p1", nil)
	e.produce(generator.Unique(4, 10, 20)...)
	cl := e.client(kgo.ConsumeTopics(e.cfg.Topology.Events.Name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var n int
	for n < 20 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of 20 events", n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if c := r.Attrs.CompressionType(); c != 4 {
				t.Fatalf("events record in a batch of compression %d, want 4 (zstd)", c)
			}
			n++
		})
	}
}
