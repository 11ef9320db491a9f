package connectortest

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/schemas"
)

// Stored is one record as the destination holds it.
type Stored struct {
	Key   string
	Value []byte
	// Attrs are its headers or attributes; nil where the destination
	// keeps none (Kinesis).
	Attrs map[string]string
}

// RecordTarget is a record destination under test.
type RecordTarget struct {
	// Start starts a real test server and returns a func opening a sink
	// against it and a func reading back every record it holds. With
	// flaky the server refuses some writes as temporary failures
	// (throttling, an outage), as the real service does.
	Start func(t *testing.T, flaky bool) (open func(t *testing.T) connectors.RecordSink, read func() []Stored)
	// TooLarge is a value size the destination can never take.
	TooLarge int
	// Attrs: the destination keeps each record's headers.
	Attrs bool
	// Refusal is an on_error rule that matches how the flaky server
	// refuses writes (its class or its error code).
	Refusal connectors.ErrorRule
	// RefusalMayStore: the refusal is a timeout, which does not say the
	// destination did not store the record (the client's own retry may
	// land as the outage ends), so a dropped event may be stored too.
	RefusalMayStore bool
}

// MakeRecords encodes events as the runtime does for a record sink, in
// batches of per events; each event carries a producer's traceparent.
func MakeRecords(t testing.TB, sink connectors.RecordSink, events []*schemas.Event, per int) [][]*connectors.Record {
	t.Helper()
	var out [][]*connectors.Record
	for i := 0; i < len(events); i += per {
		b := MakeBatch(t, 0, int64(i), events[i:min(i+per, len(events))], "ndjson", "none")
		for j, r := range b.Records {
			r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte("tp-" + b.Events[j].EventID)}, {Key: "firehose.connector", Value: []byte("x")}}
		}
		out = append(out, connectors.EncodeRecords(b, sink.KeyTemplate()))
	}
	return out
}

// WriteAll writes each batch of records until every record is accepted,
// sending again only those that were not, as the runtime does. A
// permanent refusal fails the test. It returns how many writes were
// repeated.
func WriteAll(t testing.TB, sink connectors.RecordSink, batches [][]*connectors.Record) int {
	t.Helper()
	retries := 0
	deadline := time.Now().Add(2 * time.Minute)
	for _, recs := range batches {
		pending := recs
		for attempt := 0; len(pending) > 0; attempt++ {
			if attempt > 0 {
				retries++
				time.Sleep(50 * time.Millisecond) // the runtime backs off too
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d records not accepted after 2 minutes: %v", len(pending), pending[0].Err)
			}
			for _, r := range pending {
				r.Err = connectors.ErrNotWritten
			}
			sink.Write(context.Background(), pending)
			var left []*connectors.Record
			for _, r := range pending {
				if connectors.IsPermanent(r.Err) {
					t.Fatalf("record %s refused for good: %v", r.Key, r.Err)
				}
				if r.Err != nil {
					left = append(left, r)
				}
			}
			pending = left
		}
	}
	return retries
}

// CheckStored asserts that stored holds every one of events, keyed by
// resource, each resource's in order of first arrival, each with its
// firehose_metadata and (with attrs) its headers. With once no event may
// be stored twice.
func CheckStored(t testing.TB, events []*schemas.Event, stored []Stored, attrs, once bool) {
	t.Helper()
	var got []*schemas.Event
	for _, s := range stored {
		e, err := schemas.JSON{}.Decode(s.Value)
		if err != nil {
			t.Fatalf("stored value is not an event: %v: %.200s", err, s.Value)
		}
		var meta struct {
			M struct {
				BatchID string `json:"batch_id"`
			} `json:"firehose_metadata"`
		}
		if err := json.Unmarshal(s.Value, &meta); err != nil || !strings.HasPrefix(meta.M.BatchID, "suite-") {
			t.Fatalf("%s: no firehose_metadata.batch_id in %.300s", e.EventID, s.Value)
		}
		if s.Key != e.ResourceID {
			t.Fatalf("%s of %s stored under key %q", e.EventID, e.ResourceID, s.Key)
		}
		if attrs {
			a := s.Attrs
			if a["event_type"] != e.EventType || a["account_id"] != e.AccountID || a["event_id"] != e.EventID || a["traceparent"] != "tp-"+e.EventID {
				t.Fatalf("%s stored with headers %v", e.EventID, a)
			}
			if _, ok := a["firehose.connector"]; ok {
				t.Fatalf("%s: Firehose's own header firehose.connector was written to the destination", e.EventID)
			}
		}
		got = append(got, e)
	}
	CheckOrder(t, events, got, once)
}

// RunRecords is the conformance suite of a record sink: every event
// arrives once, keyed, in order per key, with its metadata and headers; a
// temporary failure loses nothing and breaks no key's order; a record the
// destination can never take is refused alone; a cancelled Write claims
// nothing it did not store; Close is safe twice and no goroutine outlives
// the sink.
func RunRecords(t *testing.T, tg RecordTarget) {
	t.Run("OrderKeysAndHeaders", func(t *testing.T) {
		open, read := tg.Start(t, false)
		sink := open(t)
		defer sink.Close(context.Background())
		evs := EventsOver(41, 200, 3000)
		retries := WriteAll(t, sink, MakeRecords(t, sink, evs, 500))
		CheckStored(t, evs, read(), tg.Attrs, retries == 0)
	})
	t.Run("TemporaryFailuresLoseNothingAndKeepOrder", func(t *testing.T) {
		open, read := tg.Start(t, true)
		sink := open(t)
		defer sink.Close(context.Background())
		evs := EventsOver(42, 200, 3000)
		retries := WriteAll(t, sink, MakeRecords(t, sink, evs, 500))
		if retries == 0 {
			t.Fatal("the flaky server failed no write; the test proved nothing")
		}
		CheckStored(t, evs, read(), tg.Attrs, false)
		t.Logf("%d writes repeated", retries)
	})
	t.Run("TooLargeIsRefusedAlone", func(t *testing.T) {
		open, read := tg.Start(t, false)
		sink := open(t)
		defer sink.Close(context.Background())
		evs := EventsOver(43, 5, 30)
		evs[7].LeadData = json.RawMessage(`{"blob":"` + noise(tg.TooLarge) + `"}`)
		recs := MakeRecords(t, sink, evs, len(evs))[0]
		sink.Write(context.Background(), recs)
		if !connectors.IsPermanent(recs[7].Err) {
			t.Fatalf("a record of %d bytes: %v, want a permanent refusal", len(recs[7].Value), recs[7].Err)
		}
		var rest []*connectors.Record
		for i, r := range recs {
			if i != 7 && r.Err != nil {
				if connectors.IsPermanent(r.Err) {
					t.Fatalf("record %d refused with the large one: %v", i, r.Err)
				}
				rest = append(rest, r)
			}
		}
		WriteAll(t, sink, [][]*connectors.Record{rest})
		CheckStored(t, append(append([]*schemas.Event{}, evs[:7]...), evs[8:]...), read(), tg.Attrs, true)
	})
	t.Run("CancelledWriteClaimsNothingUnstored", func(t *testing.T) {
		open, read := tg.Start(t, false)
		sink := open(t)
		defer sink.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		recs := MakeRecords(t, sink, EventsOver(44, 5, 50), 50)[0]
		for _, r := range recs {
			r.Err = connectors.ErrNotWritten
		}
		sink.Write(ctx, recs)
		stored := map[string]bool{}
		for _, s := range read() {
			stored[string(s.Value)] = true
		}
		for i, r := range recs {
			if r.Err == nil && !stored[string(r.Value)] {
				t.Fatalf("record %d reported accepted by a cancelled Write but not stored", i)
			}
			if r.Err != nil && connectors.IsPermanent(r.Err) {
				t.Fatalf("record %d refused for good by a cancelled Write: %v", i, r.Err)
			}
		}
	})
	t.Run("OnErrorDropsWhatItMatches", func(t *testing.T) {
		evs := EventsOver(46, 20, 600)
		p, read := refusing(t, tg, evs, connectors.ActionDrop)
		p.Drained(t)
		dropped := p.Worker.Stats().Dropped.Load()
		stored := read()
		distinct := map[string]bool{}
		for _, s := range stored {
			distinct[string(s.Value)] = true
		}
		if n := int(dropped) + len(stored); dropped == 0 || len(distinct) != len(stored) || n < len(evs) || n > len(evs) && !tg.RefusalMayStore {
			t.Fatalf("%d events dropped and %d stored (%d distinct) of %d: the refused ones must be dropped, the rest stored once", dropped, len(stored), len(distinct), len(evs))
		}
		if n := p.DeadLetters(t); n != 0 {
			t.Fatalf("%d dead letters: dropped events must not reach the DLQ", n)
		}
		t.Logf("%d of %d events dropped by %s", dropped, len(evs), tg.Refusal)
	})
	t.Run("OnErrorStopCommitsNothingPastARefusal", func(t *testing.T) {
		evs := EventsOver(47, 20, 600)
		p, read := refusing(t, tg, evs, connectors.ActionStop)
		if err := p.Stopped(t, time.Minute); !errors.Is(err, connectors.ErrStopped) {
			t.Fatalf("the worker ended with %v, want it stopped by the rule", err)
		}
		stored := map[string]bool{}
		for _, s := range read() {
			d, err := decodeJSON(s.Value)
			if err != nil {
				t.Fatal(err)
			}
			stored[d.Event.EventID] = true
		}
		firstLost := map[int32]int64{}
		for i, e := range evs {
			pos := p.Offsets[i]
			if f, ok := firstLost[pos.Partition]; !stored[e.EventID] && (!ok || pos.Offset < f) {
				firstLost[pos.Partition] = pos.Offset
			}
		}
		if len(firstLost) == 0 {
			t.Fatal("every event was stored: the flaky server refused nothing")
		}
		for part, first := range firstLost {
			if c := p.Committed(t, part); c > first {
				t.Fatalf("partition %d committed to %d past offset %d, which was never stored", part, c, first)
			}
		}
		if n := p.DeadLetters(t); n != 0 {
			t.Fatalf("%d dead letters after a stop", n)
		}
	})
	t.Run("RateLimitKeepsEveryWindow", func(t *testing.T) {
		open, read := tg.Start(t, false)
		ts := &timedSink{RecordSink: open(t)}
		defer ts.Close(context.Background())
		evs := EventsOver(48, 50, 1500)
		p := StartPipeline(t, ts, evs, connectors.Config{Batch: connectors.Bounds{MaxEvents: 100, MaxAge: 50 * time.Millisecond},
			RateLimit: connectors.RateLimit{EventsPerSecond: 500}})
		p.Drained(t)
		CheckStored(t, evs, read(), false, false)
		if most := MostInWindow(ts.sent(), 2*time.Second); most > 1200 {
			t.Fatalf("%d events sent within 2 s under a limit of 500/s: over 2.4 times the rate", most)
		}
	})
	t.Run("CloseTwiceAndNoLeaks", func(t *testing.T) {
		open, _ := tg.Start(t, false)
		before := runtime.NumGoroutine()
		sink := open(t)
		WriteAll(t, sink, MakeRecords(t, sink, EventsOver(45, 5, 20), 20))
		if err := sink.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		waitGoroutines(t, before)
	})
}

// waitGoroutines fails the test when more goroutines than before are
// still running after a few seconds.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before the sink, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noise is n letters that do not compress: a limit a destination measures
// after compression (Kafka's) is still exceeded.
func noise(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// timedSink records when each write began and how many records it had
// accepted.
type timedSink struct {
	connectors.RecordSink
	mu    sync.Mutex
	sends []Sent
}

func (s *timedSink) Write(ctx context.Context, recs []*connectors.Record) {
	at := time.Now()
	s.RecordSink.Write(ctx, recs)
	n := 0
	for _, r := range recs {
		if r.Err == nil {
			n++
		}
	}
	s.mu.Lock()
	s.sends = append(s.sends, Sent{At: at, Events: n})
	s.mu.Unlock()
}

func (s *timedSink) sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends)
}

// refusing starts a pipeline of evs into the flaky server, with one
// on_error rule: the target's refusal, with action.
func refusing(t *testing.T, tg RecordTarget, evs []*schemas.Event, action string) (*Pipeline, func() []Stored) {
	open, read := tg.Start(t, true)
	sink := open(t)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	rule := tg.Refusal
	rule.Action = action
	return StartPipeline(t, sink, evs, connectors.Config{OnError: []connectors.ErrorRule{rule}}), read
}
