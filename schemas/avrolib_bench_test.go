package schemas_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/firehose/firehose/schemas"
)

// avroEvent is event.avsc as hamba/avro binds it: nullable unions are
// pointers, timestamp-millis a time.Time.
type avroEvent struct {
	EventID      string    `avro:"event_id"`
	Timestamp    time.Time `avro:"timestamp"`
	AccountID    string    `avro:"account_id"`
	ResourceID   string    `avro:"resource_id"`
	Sequence     int64     `avro:"sequence"`
	EventType    string    `avro:"event_type"`
	ResourceType *string   `avro:"resource_type"`
	FlowID       *string   `avro:"flow_id"`
	LeadID       *string   `avro:"lead_id"`
	EntityType   *string   `avro:"entity_type"`
	EntityID     *string   `avro:"entity_id"`
	Outcome      *string   `avro:"outcome"`
	DurationMS   *int64    `avro:"duration_ms"`
	Metadata     *string   `avro:"metadata"`
	LeadData     *string   `avro:"lead_data"`
	Extra        *string   `avro:"extra"`
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toHamba(e *schemas.Event) avroEvent {
	a := avroEvent{EventID: e.EventID, Timestamp: e.Timestamp, AccountID: e.AccountID, ResourceID: e.ResourceID, Sequence: e.Sequence, EventType: e.EventType,
		ResourceType: opt(e.ResourceType), FlowID: opt(e.FlowID), LeadID: opt(e.LeadID), EntityType: opt(e.EntityType), EntityID: opt(e.EntityID),
		Outcome: opt(e.Outcome), DurationMS: e.DurationMS, Metadata: opt(string(e.Metadata)), LeadData: opt(string(e.LeadData))}
	return a
}

// avroBodies returns the corpus as Avro binary record bodies (the single
// object encoding without its 10-byte header), written by goavro.
func avroBodies(t testing.TB) ([][]byte, []avroEvent) {
	evs := corpus(1024)
	var bodies [][]byte
	var structs []avroEvent
	for _, raw := range evs {
		e, err := schemas.JSON{}.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		e.Extra = nil
		single, err := schemas.Avro{}.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, single[10:])
		structs = append(structs, toHamba(e))
	}
	return bodies, structs
}

// hamba/avro and goavro write the same bytes for the same events and read
// each other's, so either can back the Avro codec.
func TestHambaAndGoavroAgree(t *testing.T) {
	schema := avro.MustParse(schemas.AvroSchema)
	bodies, structs := avroBodies(t)
	for i, body := range bodies {
		got, err := avro.Marshal(schema, structs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("event %d: hamba wrote %x, goavro %x", i, got, body)
		}
		var back avroEvent
		if err := avro.Unmarshal(schema, body, &back); err != nil || back.EventID != structs[i].EventID || !back.Timestamp.Equal(structs[i].Timestamp) {
			t.Fatalf("event %d: hamba read %+v (%v)", i, back, err)
		}
	}
}

func BenchmarkAvroDecodeGoavro(b *testing.B) {
	codec, err := schemas.AvroCodec()
	if err != nil {
		b.Fatal(err)
	}
	bodies, _ := avroBodies(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		native, _, err := codec.NativeFromBinary(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := schemas.FromAvroNative(native); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroDecodeHamba(b *testing.B) {
	schema := avro.MustParse(schemas.AvroSchema)
	bodies, _ := avroBodies(b)
	b.ReportAllocs()
	var e avroEvent
	for i := 0; b.Loop(); i++ {
		if err := avro.Unmarshal(schema, bodies[i%len(bodies)], &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroEncodeGoavro(b *testing.B) {
	codec, err := schemas.AvroCodec()
	if err != nil {
		b.Fatal(err)
	}
	var evs []*schemas.Event
	for _, raw := range corpus(1024) {
		e, _ := schemas.JSON{}.Decode(raw)
		e.Extra = nil
		evs = append(evs, e)
	}
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	for i := 0; b.Loop(); i++ {
		native, err := schemas.AvroNative(evs[i%len(evs)])
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = codec.BinaryFromNative(buf[:0], native); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroEncodeHamba(b *testing.B) {
	schema := avro.MustParse(schemas.AvroSchema)
	_, structs := avroBodies(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := avro.Marshal(schema, structs[i%len(structs)]); err != nil {
			b.Fatal(err)
		}
	}
}
