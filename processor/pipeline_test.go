package processor

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// The bad records a fault-injection review found delivered: each is now a
// dead letter of class invalid whose message says what to fix, and a good
// record after them is still emitted.
func TestBadRecordsThatGotThroughAreDeadLettered(t *testing.T) {
	p := &Pipeline{In: schemas.JSON{}, Out: schemas.JSON{}, EventsTopic: "events", DLQTopic: "dlq", MaxEventBytes: 4 << 20, Now: time.Now}
	ev := func(resource, more string) []byte {
		return []byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"` + resource + `","sequence":1,"event_type":"t"` + more + `}`)
	}
	tests := []struct {
		name  string
		key   []byte
		value []byte
		msg   string
	}{
		{"key differs from resource_id", []byte("lead_2"), ev("lead_1", ""), `record key "lead_2" differs from resource_id "lead_1"`},
		{"no key", nil, ev("lead_1", ""), "record has no key"},
		{"duplicated top-level key", []byte("lead_1"), ev("lead_1", `,"sequence":2`), "sequence: duplicate key"},
		{"invalid UTF-8 in a string", []byte("lead_1"), ev("lead_1", `,"metadata":{"n":"a`+"\xc3\x28"+`"}`), "invalid UTF-8"},
		{"100,000-deep object", []byte("lead_1"), ev("lead_1", `,"metadata":`+strings.Repeat(`{"a":`, 100000)+"1"+strings.Repeat("}", 100000)), "nests deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, outcome := p.Process(&kgo.Record{Key: tt.key, Value: tt.value})
			if outcome != DeadLettered || out.Topic != "dlq" {
				t.Fatalf("outcome %v, want a dead letter", outcome)
			}
			if c := dlq.Header(out, dlq.HeaderClass); c != schemas.ClassInvalid {
				t.Fatalf("class %q", c)
			}
			if m := dlq.Header(out, dlq.HeaderMessage); !strings.Contains(m, tt.msg) {
				t.Fatalf("message %q lacks %q", m, tt.msg)
			}
		})
	}
	if _, outcome := p.Process(&kgo.Record{Key: []byte("lead_1"), Value: ev("lead_1", "")}); outcome != Emitted {
		t.Fatalf("a good record after them: %v", outcome)
	}
}

// Keys and values are written one after another into shared chunks: each must keep
// its own bytes while the producer holds them all, whatever size the
// events are (some outgrow a chunk's room), from several goroutines at
// once, and appending to one must not write over the next.
func TestEncodedValuesKeepTheirBytes(t *testing.T) {
	p := &Pipeline{In: schemas.JSON{}, Out: schemas.JSON{}, EventsTopic: "events", DLQTopic: "dlq", MaxEventBytes: 4 << 20, Now: time.Now}
	event := func(g, i int) []byte {
		pad := strings.Repeat("x", (i*397)%(3*encodeRoom)) // from 0 to 3 times the room asked for
		return []byte(fmt.Sprintf(`{"event_id":"e%d_%d","timestamp":"2024-01-15T14:30:45.000Z","account_id":"a","resource_id":"r%d","sequence":%d,"event_type":"t","metadata":{"pad":%q}}`, g, i, g, i, pad))
	}
	const goroutines, n = 4, 600
	outs := inParallel(goroutines, n, func(g, i int) *kgo.Record {
		out, outcome := p.Process(&kgo.Record{Key: fmt.Appendf(nil, "r%d", g), Value: event(g, i)})
		if outcome != Emitted {
			t.Errorf("event %d_%d: %v", g, i, outcome)
			return &kgo.Record{}
		}
		return out
	})
	if t.Failed() {
		return
	}
	for g := range goroutines {
		for i, out := range outs[g] {
			_ = append(out.Value, "garbage"...) // a careless reader of one value
			_ = append(out.Key, "garbage"...)
			if want := event(g, i); !bytes.Equal(out.Value, want) {
				t.Fatalf("value of event %d_%d is\n%.200s\nwant\n%.200s", g, i, out.Value, want)
			}
			if want := fmt.Sprintf("r%d", g); string(out.Key) != want {
				t.Fatalf("key of event %d_%d is %q, want %q", g, i, out.Key, want)
			}
		}
	}
}

// A producer's headers are its own to send, not to carry anywhere: at most
// MaxCarriedHeaders and MaxCarriedHeaderBytes of them reach the event,
// never one named like Firehose's (in any case), never trace context that
// is not W3C's; and an event that outgrows the events topic after
// enrichment is dead-lettered as oversize, not retried for ever.
func TestHeadersAreBoundedAndOutputFits(t *testing.T) {
	p := &Pipeline{In: schemas.JSON{}, Out: schemas.JSON{}, EventsTopic: "events", DLQTopic: "dlq", MaxEventBytes: 1 << 20, Now: time.Now, HeadersDropped: new(atomic.Int64)}
	value := []byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"lead_1","sequence":1,"event_type":"t"}`)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	flood := []kgo.RecordHeader{
		{Key: "FIREHOSE.connector", Value: []byte("other")}, {Key: "Firehose.Error.Class", Value: []byte("x")},
		{Key: "traceparent", Value: []byte(tp + "\r\nX: 1")}, {Key: "tracestate", Value: bytes.Repeat([]byte("a"), 70<<10)},
		{Key: "x-ok", Value: []byte("1")},
	}
	for range 100_000 {
		flood = append(flood, kgo.RecordHeader{Key: "x-h", Value: bytes.Repeat([]byte("v"), 80)})
	}
	out, outcome := p.Process(&kgo.Record{Key: []byte("lead_1"), Value: value, Headers: flood})
	if outcome != Emitted {
		t.Fatalf("outcome %v: %v", outcome, out.Headers)
	}
	n := 0
	for _, h := range out.Headers {
		n += len(h.Key) + len(h.Value)
		if dlq.Reserved(h.Key) || h.Key == "traceparent" || h.Key == "tracestate" {
			t.Fatalf("carried %s", h.Key)
		}
	}
	if len(out.Headers) > MaxCarriedHeaders || n > MaxCarriedHeaderBytes || out.Headers[0].Key != "x-ok" || p.HeadersDropped.Load() < 100_000-MaxCarriedHeaders {
		t.Fatalf("carried %d headers of %d bytes, dropped %d", len(out.Headers), n, p.HeadersDropped.Load())
	}
	out, _ = p.Process(&kgo.Record{Key: []byte("lead_1"), Value: value, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}})
	if len(out.Headers) != 1 || string(out.Headers[0].Value) != tp {
		t.Fatalf("a valid traceparent was not carried: %v", out.Headers)
	}

	p.EventsMaxBytes = dlq.RecordOverhead + len(value) + 40
	big := bytes.Replace(value, []byte(`"t"}`), []byte(`"t","note":"`+strings.Repeat("n", 64)+`"}`), 1)
	out, outcome = p.Process(&kgo.Record{Key: []byte("lead_1"), Value: big})
	if outcome != DeadLettered || dlq.Header(out, dlq.HeaderClass) != schemas.ClassOversize || !strings.Contains(dlq.Header(out, dlq.HeaderMessage), "over what the events topic takes") {
		t.Fatalf("an event over the events topic's limit: %v %v", outcome, out.Headers)
	}
}
