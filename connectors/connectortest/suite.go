package connectortest

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// Encodings and Compressions are every combination a destination must
// carry byte for byte: every one config accepts.
var (
	Encodings    = connectors.Encodings
	Compressions = connectors.Compressions
)

// Target is a destination under test.
type Target struct {
	// New opens a sink against the real test server.
	New func(t *testing.T) connectors.Sink
	// Fetch returns the bytes the destination holds for b (the object at
	// b.Key, the last request carrying b.ID, …), failing the test when
	// there are none.
	Fetch func(t *testing.T, b *connectors.Batch) []byte
}

// Events returns n seeded events spread over a few resources, in order.
func Events(seed uint64, n int) []*schemas.Event {
	g := generator.New(seed, 20)
	g.DuplicateRate = 0
	clock := time.Date(2024, 1, 15, 14, 30, 0, 0, time.UTC)
	g.Now = func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// MakeBatch builds and encodes a batch as the runtime would.
func MakeBatch(t testing.TB, partition int32, first int64, events []*schemas.Event, encoding, compression string) *connectors.Batch {
	t.Helper()
	enc, comp, err := connectors.NewBody(encoding, compression, "deflate")
	if err != nil {
		t.Fatal(err)
	}
	b := &connectors.Batch{
		Connector:   "suite",
		Topic:       "events",
		Partition:   partition,
		FirstOffset: first,
		LastOffset:  first + int64(len(events)) - 1,
		Key:         fmt.Sprintf("suite/%s/%s/", encoding, compression) + connectors.ObjectName("events", partition, first, enc.Extension()+comp.Extension()),
		Events:      events,
		SealedAt:    time.Date(2024, 1, 15, 15, 0, 0, 0, time.UTC),
	}
	for i := range events {
		b.Records = append(b.Records, &kgo.Record{Topic: "events", Partition: partition, Offset: first + int64(i)})
	}
	b.ID = connectors.BatchID("suite", b.Records)
	if b.Body, err = connectors.EncodeBody(enc, comp, b); err != nil {
		t.Fatal(err)
	}
	b.ContentType, b.ContentEncoding = enc.ContentType(), comp.ContentEncoding()
	return b
}

// CheckDelivered asserts that got holds exactly b's events, in order, with
// b's batch id and positions.
func CheckDelivered(t testing.TB, b *connectors.Batch, got []Delivered) {
	t.Helper()
	if len(got) != len(b.Events) {
		t.Fatalf("batch %s: %d events came back, %d were sent", b.ID, len(got), len(b.Events))
	}
	for i, d := range got {
		if !reflect.DeepEqual(d.Event, b.Events[i]) {
			t.Fatalf("batch %s event %d changed:\nsent %+v\ngot  %+v", b.ID, i, b.Events[i], d.Event)
		}
		if d.BatchID != b.ID || d.Sequence != int64(i) || !d.DeliveredAt.Equal(b.SealedAt) {
			t.Fatalf("batch %s event %d: firehose_metadata %q %d %s", b.ID, i, d.BatchID, d.Sequence, d.DeliveredAt)
		}
	}
}

// Run is the conformance suite: every encoding × compression round-trips
// byte for byte, a redelivery of a batch leaves one copy, a cancelled
// delivery fails, Close is safe twice, and no goroutine outlives the sink.
func Run(t *testing.T, tg Target) {
	t.Run("RoundTrip", func(t *testing.T) {
		sink := tg.New(t)
		defer sink.Close(context.Background())
		evs := Events(1, 50)
		for i, enc := range Encodings {
			for j, comp := range Compressions {
				b := MakeBatch(t, int32(i), int64(j*1000), evs, enc, comp)
				if err := sink.Deliver(context.Background(), b); err != nil {
					t.Fatalf("%s/%s: %v", enc, comp, err)
				}
				stored := tg.Fetch(t, b)
				if !reflect.DeepEqual(stored, b.Body) {
					t.Fatalf("%s/%s: stored %d bytes differ from the %d sent", enc, comp, len(stored), len(b.Body))
				}
				got, err := Decode(stored, enc, comp)
				if err != nil {
					t.Fatalf("%s/%s: %v", enc, comp, err)
				}
				CheckDelivered(t, b, got)
			}
		}
	})
	t.Run("RedeliveryOverwrites", func(t *testing.T) {
		sink := tg.New(t)
		defer sink.Close(context.Background())
		b := MakeBatch(t, 7, 42, Events(2, 20), "ndjson", "gzip")
		for range 2 {
			if err := sink.Deliver(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		if stored := tg.Fetch(t, b); !reflect.DeepEqual(stored, b.Body) {
			t.Fatal("after a redelivery the destination holds other bytes")
		}
	})
	t.Run("CancelledDeliveryFails", func(t *testing.T) {
		sink := tg.New(t)
		defer sink.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sink.Deliver(ctx, MakeBatch(t, 8, 0, Events(3, 5), "ndjson", "none")); err == nil {
			t.Fatal("Deliver with a cancelled context returned nil: the runtime would commit an undelivered batch")
		}
	})
	t.Run("CloseTwiceAndNoLeaks", func(t *testing.T) {
		before := runtime.NumGoroutine()
		sink := tg.New(t)
		if err := sink.Deliver(context.Background(), MakeBatch(t, 9, 0, Events(4, 5), "json", "none")); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		waitGoroutines(t, before)
	})
}

// EventsOver returns n seeded events spread over the given number of
// resources, each resource's in increasing sequence.
func EventsOver(seed uint64, resources, n int) []*schemas.Event {
	return generator.Unique(seed, resources, n)
}

// CheckOrder asserts that got holds every event of want and that, per
// resource, the first copies come in increasing sequence. With once, an
// event may not come twice and nothing else may come; without, repeats
// (redeliveries after a lost acknowledgement) are skipped.
func CheckOrder(t testing.TB, want, got []*schemas.Event, once bool) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, e := range got {
		if seen[e.EventID] {
			if once {
				t.Fatalf("%s delivered twice", e.EventID)
			}
			continue
		}
		seen[e.EventID] = true
		if prev, ok := last[e.ResourceID]; ok && e.Sequence <= prev {
			t.Fatalf("%s: sequence %d after %d", e.ResourceID, e.Sequence, prev)
		}
		last[e.ResourceID] = e.Sequence
	}
	for _, e := range want {
		if !seen[e.EventID] {
			t.Fatalf("%s lost", e.EventID)
		}
	}
	if once && len(got) != len(want) {
		t.Fatalf("%d delivered for %d events", len(got), len(want))
	}
}
