package schemas_test

import (
	"reflect"
	"testing"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// scalars is e without what DecodeHeader does not keep.
func scalars(e *schemas.Event) schemas.Event {
	c := *e
	c.Metadata, c.LeadData, c.Extra = nil, nil, nil
	return c
}

// For every event the processor writes, schemas.DecodeHeader reads the same
// scalar fields as the full decoder.
func TestDecodeHeaderReadsWhatDecodeReads(t *testing.T) {
	g := generator.New(11, 100)
	for range 2000 {
		v, _ := schemas.JSON{}.Append(nil, g.Next())
		full, err := schemas.JSON{}.Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := schemas.DecodeHeader(v, "firehose_metadata")
		if !ok {
			t.Fatalf("schemas.DecodeHeader refused a processor-written event: %s", v)
		}
		if !reflect.DeepEqual(scalars(h), scalars(full)) {
			t.Fatalf("header %+v, decode %+v", scalars(h), scalars(full))
		}
	}
}

func TestDecodeHeaderRefuses(t *testing.T) {
	for _, v := range []string{
		``, `[]`, `"x"`, `{`, `{"event_id":"e"}`,
		`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","event_type":"t"}`,                // no sequence
		`{"event_id":1,"timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t"}`,     // a number for a string
		`{"event_id":"e","timestamp":"yesterday","account_id":"a","resource_id":"r","sequence":1,"event_type":"t"}`,              // not RFC 3339
		`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1.5,"event_type":"t"}`, // not an integer
		`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","lead_data":[1]}`,
		`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":-1,"event_type":"t"}`,
		`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","firehose_metadata":{}}`,
	} {
		if _, ok := schemas.DecodeHeader([]byte(v), "firehose_metadata"); ok {
			t.Errorf("schemas.DecodeHeader took %s", v)
		}
	}
}

// Whatever schemas.DecodeHeader takes, the full decoder reads the same scalars
// from, or refuses for what the processor checks beyond them.
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte(`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","lead_data":{"x":1}}`))
	f.Add([]byte(`{"event_id":"e","timestamp":"2026-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","Event_ID":"x"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		h, ok := schemas.DecodeHeader(v, "firehose_metadata")
		if !ok {
			return
		}
		full, err := schemas.JSON{}.Decode(v)
		if err != nil {
			if e, isErr := err.(*schemas.Error); !isErr || e.Class != schemas.ClassInvalid && e.Class != schemas.ClassDecode {
				t.Fatalf("full decode: %v", err)
			}
			return // beyond the header: nesting, duplicate or case-variant keys
		}
		if !reflect.DeepEqual(scalars(h), scalars(full)) {
			t.Fatalf("header %+v, decode %+v", scalars(h), scalars(full))
		}
	})
}
