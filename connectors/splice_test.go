package connectors

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// spliceBatch is a batch of the given record values as the runtime cuts
// it: with each event decoded, or (spliced) with the events the runtime
// would not keep left nil.
func spliceBatch(t testing.TB, values [][]byte, spliced bool) *Batch {
	b := &Batch{ID: "c-events-0-0-1-0123456789abcdef", SealedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i, v := range values {
		e, err := schemas.JSON{Borrow: true}.Decode(v)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		b.Records = append(b.Records, &kgo.Record{Value: v, Offset: int64(i)})
		if spliced && spliceable(v) && e.Extra.Get(MetadataKey) == nil {
			e = nil
		}
		b.Events = append(b.Events, e)
	}
	return b
}

// The processor writes each event in the encoder's canonical form, so a
// spliced body is byte for byte the body encoded from decoded events:
// what a destination receives does not change.
func TestSplicedBodiesEqualEncodedOnes(t *testing.T) {
	g := generator.New(7, 50)
	var values [][]byte
	for range 500 {
		v, err := schemas.JSON{}.Append(nil, g.Next())
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	for _, enc := range []Encoder{NDJSON{}, JSONArray{}} {
		want, _ := EncodeBody(enc, None{}, spliceBatch(t, values, false))
		sb := spliceBatch(t, values, true)
		for i, e := range sb.Events {
			if e != nil {
				t.Fatalf("event %d was kept: a processor-written value must splice", i)
			}
		}
		got, _ := EncodeBody(enc, None{}, sb)
		if !bytes.Equal(got, want) {
			t.Fatalf("%T: spliced body differs from the encoded one:\n%.300s\n%.300s", enc, got, want)
		}
	}
}

// A value that cannot be written as it is keeps its decoded event and is
// encoded: one with line breaks between tokens (it would split an NDJSON
// line), and one that already carries firehose_metadata (a redriven
// delivered event, whose old metadata is replaced, not repeated).
func TestUnspliceableValuesAreEncoded(t *testing.T) {
	pretty := []byte("{\n  \"event_id\": \"e1\", \"timestamp\": \"2026-01-01T00:00:00Z\", \"account_id\": \"a\",\n  \"resource_id\": \"r\", \"sequence\": 1, \"event_type\": \"lead.created\"\n}\n")
	redriven := []byte(`{"event_id":"e2","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":2,"event_type":"lead.created","firehose_metadata":{"batch_id":"old"}}`)
	b := spliceBatch(t, [][]byte{pretty, redriven}, true)
	if b.Events[0] == nil || b.Events[1] == nil {
		t.Fatal("an unspliceable value's event was not kept")
	}
	b.Events[1].Extra.Delete(MetadataKey) // as the worker does
	body, _ := EncodeBody(NDJSON{}, None{}, b)
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines for 2 events:\n%s", len(lines), body)
	}
	if bytes.Count(lines[1], []byte(MetadataKey)) != 1 || bytes.Contains(lines[1], []byte(`"old"`)) {
		t.Fatalf("the redriven event's metadata is not replaced: %s", lines[1])
	}
}

// Any value the decoder accepts and splice takes becomes one NDJSON line
// of valid JSON holding the same event plus its firehose_metadata.
func FuzzSpliceMatchesDecode(f *testing.F) {
	f.Add([]byte(`{"event_id":"e1","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"lead.created"}`))
	f.Add([]byte(`{"event_id":"e1","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","lead_data":{"x":[1,{"y":null}]}, "tags" : {"a":"b"}  }  `))
	f.Add([]byte("{\"event_id\":\"e1\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"account_id\":\"a\",\"resource_id\":\"r\",\"sequence\":1,\"event_type\":\"t\"}\t"))
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := schemas.JSON{}.Decode(v)
		if err != nil || !spliceable(v) || e.Extra.Get(MetadataKey) != nil {
			return
		}
		b := &Batch{ID: "c-e-0-0-0-0000000000000000", Records: []*kgo.Record{{Value: v}}, Events: []*schemas.Event{nil}}
		line, _ := EncodeBody(NDJSON{}, None{}, b)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		if !json.Valid(line) {
			t.Fatalf("not valid JSON: %q", line)
		}
		got, err := schemas.JSON{}.Decode(line[:len(line)-1])
		if err != nil {
			t.Fatalf("the spliced line does not decode: %v\n%q", err, line)
		}
		if got.Extra.Get(MetadataKey) == nil {
			t.Fatalf("no %s in %q", MetadataKey, line)
		}
		got.Extra.Delete(MetadataKey)
		if len(e.Extra) == 0 {
			e.Extra = nil
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("spliced event differs:\n%+v\n%+v", got, e)
		}
	})
}

// A delivered event sent round again (a redrive) carries its old
// firehose_metadata: the batcher keeps its event without it, so the body
// holds the new metadata once, whether the body splices or not.
func TestRedrivenEventGetsItsMetadataOnce(t *testing.T) {
	v := []byte(`{"event_id":"e2","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":2,"event_type":"lead.created","firehose_metadata":{"batch_id":"old"}}`)
	for _, splice := range []bool{true, false} {
		bt := testBatcher(false, Bounds{MaxEvents: 1, MaxBytes: 1 << 20, MaxAge: time.Hour}, 0)
		bt.splice = splice
		ps := newPartState()
		e, err := schemas.JSON{Borrow: true}.Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		bt.add(ps, &kgo.Record{Topic: "events", Value: v}, e, nil, time.Unix(0, 0))
		b := ps.sealed[0]
		b.ID, b.SealedAt = "new-batch", time.Unix(0, 0)
		body, _ := EncodeBody(NDJSON{}, None{}, b)
		if bytes.Count(body, []byte(MetadataKey)) != 1 || bytes.Contains(body, []byte(`"old"`)) || !bytes.Contains(body, []byte(`"new-batch"`)) {
			t.Fatalf("splice %v: %s", splice, body)
		}
	}
}
