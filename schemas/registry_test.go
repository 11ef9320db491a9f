package schemas_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/firehose/firehose/schemas"
)

func registry(t *testing.T) (*srfake.Registry, *schemas.Registry) {
	t.Helper()
	fake := srfake.New(srfake.WithGlobalCompat(sr.CompatBackward))
	t.Cleanup(fake.Close)
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return fake, schemas.NewRegistry(cl, nil)
}

func seq(vs ...[]byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for _, v := range vs {
			if !yield(v) {
				return
			}
		}
	}
}

// decode resolves then decodes, as the stages do.
func decode(t *testing.T, c *schemas.Confluent, v []byte) (*schemas.Event, error) {
	t.Helper()
	if err := c.Resolve(t.Context(), seq(v)); err != nil {
		t.Fatal(err)
	}
	return c.Decode(v)
}

// Firehose's own writer registers the event schema under its subject and
// frames every value with the id the registry gave, in Confluent's wire
// format; a reader that knows nothing but the registry reads it back.
func TestConfluentCodecsRoundTrip(t *testing.T) {
	for _, enc := range []string{schemas.EncodingAvroConfluent, schemas.EncodingJSONConfluent} {
		t.Run(enc, func(t *testing.T) {
			fake, reg := registry(t)
			w, err := reg.Codec(t.Context(), enc, "events-value", true, false)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := fake.GetSchema("events-value", 1)
			if !ok || got.ID != w.ID() {
				t.Fatalf("registered %+v (ok %v), codec writes id %d", got, ok, w.ID())
			}
			for _, e := range corpusEvents(t, 64) {
				v, err := w.Append(nil, e)
				if err != nil {
					t.Fatal(err)
				}
				if v[0] != 0 || int(binary.BigEndian.Uint32(v[1:5])) != w.ID() {
					t.Fatalf("framing %x, want 0 then id %d", v[:5], w.ID())
				}
				// A fresh registry cache, as another process has.
				_, reader := registryAt(t, fake)
				r, _ := reader.Codec(t.Context(), enc, "", true, false)
				back, err := decode(t, r, v)
				if err != nil {
					t.Fatal(err)
				}
				again, _ := w.Append(nil, back)
				if string(again) != string(v) {
					t.Fatalf("read back differs:\n%x\n%x", again, v)
				}
			}
			// Registering again (a restart) finds the same id.
			w2, err := reg.Codec(t.Context(), enc, "events-value", true, false)
			if err != nil || w2.ID() != w.ID() {
				t.Fatalf("second registration: id %d, %v; first %d", w2.ID(), err, w.ID())
			}
		})
	}
}

func registryAt(t *testing.T, fake *srfake.Registry) (*sr.Client, *schemas.Registry) {
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return cl, schemas.NewRegistry(cl, nil)
}

// evolvedSchema is event.avsc as a producer evolved it: one new optional
// field, which BACKWARD compatibility accepts.
func evolvedSchema(t *testing.T) string {
	var s map[string]any
	if err := json.Unmarshal([]byte(schemas.AvroSchema), &s); err != nil {
		t.Fatal(err)
	}
	s["fields"] = append(s["fields"].([]any), map[string]any{"name": "channel", "type": []any{"null", "string"}, "default": nil})
	b, _ := json.Marshal(s)
	return string(b)
}

// A producer using a Confluent serializer (franz-go's sr.Serde here)
// registers v1 of event.avsc, then v2 with a new optional field, and
// writes under both; both decode, and the new field is kept as the JSON
// codec keeps unknown fields.
func TestConfluentAvroProducerAndEvolution(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	v1, err := cl.CreateSchema(ctx, "events.raw-value", sr.Schema{Schema: schemas.AvroSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	v2text := evolvedSchema(t)
	v2, err := cl.CreateSchema(ctx, "events.raw-value", sr.Schema{Schema: v2text, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("the registry refused an optional new field: %v", err)
	}
	s1, s2 := avro.MustParse(schemas.AvroSchema), avro.MustParse(v2text)
	type evolved struct {
		schemas.AvroRecord
		Channel *string `avro:"channel"`
	}
	var serde sr.Serde
	serde.Register(v1.ID, schemas.AvroRecord{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(s1, v) }))
	serde.Register(v2.ID, evolved{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(s2, v) }))

	e := corpusEvents(t, 1)[0]
	e.Extra = nil
	rec, _ := schemas.ToAvro(e)
	old, err := serde.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	web := "web"
	newer, err := serde.Encode(evolved{AvroRecord: rec, Channel: &web})
	if err != nil {
		t.Fatal(err)
	}

	c, err := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	if err != nil {
		t.Fatal(err)
	}
	got1, err := decode(t, c, old)
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	got2, err := decode(t, c, newer)
	if err != nil {
		t.Fatalf("v2: %v", err)
	}
	if got1.EventID != e.EventID || !got1.Timestamp.Equal(e.Timestamp) || string(got1.LeadData) != string(e.LeadData) || len(got1.Extra) != 0 {
		t.Fatalf("v1 read as %+v, want %+v", got1, e)
	}
	if got2.EventID != e.EventID || got2.Sequence != e.Sequence || !got2.Timestamp.Equal(e.Timestamp) ||
		string(got2.Metadata) != string(e.Metadata) || string(got2.LeadData) != string(e.LeadData) || string(got2.Extra.Get("channel")) != `"web"` {
		t.Fatalf("v2 read as %+v (extra %s), want %+v with channel", got2, got2.Extra, e)
	}
}

// What cannot be read is rejected, with a message that says why, and an
// unreachable registry is not a rejection: Resolve waits for it.
func TestConfluentRejections(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	jsonID, err := cl.CreateSchema(ctx, "other-value", sr.Schema{Schema: schemas.JSONSchema, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	framed := func(id int, payload string) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), payload...)
	}
	for _, tc := range []struct {
		name, want string
		v          []byte
	}{
		{"plain JSON", "looks like plain JSON", []byte(`{"event_id":"e"}`)},
		{"short", "Schema Registry framing", []byte{0, 0, 1}},
		{"unknown id", "schema id 4242 is not in the schema registry", framed(4242, "x")},
		{"JSON schema on an Avro topic", "is a JSON schema, but this topic's encoding is avro-confluent", framed(jsonID.ID, `{}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, c, tc.v)
			if err == nil || schemas.ClassOf(err) != schemas.ClassDecode || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want a decode rejection containing %q", tc.name, err, tc.want)
			}
		})
	}

	// An outage: the registry answers 503 three times, then serves.
	w, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "events-value", true, false)
	v, _ := w.Append(nil, corpusEvents(t, 1)[0])
	var failures atomic.Int32
	fake.Intercept(func(rw http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/schemas/ids/") && failures.Add(1) <= 3 {
			http.Error(rw, `{"error_code":50301,"message":"down"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	_, fresh := registryAt(t, fake)
	rc, _ := fresh.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	if err := rc.Resolve(ctx, seq(v)); err != nil {
		t.Fatal(err)
	}
	if failures.Load() < 4 {
		t.Fatalf("%d requests: the outage was not retried", failures.Load())
	}
	if _, err := rc.Decode(v); err != nil {
		t.Fatalf("after the outage: %v", err)
	}

	// A registry that never comes back holds the values until the stage
	// stops; nothing is rejected.
	fake.ClearInterceptors()
	fake.Intercept(func(rw http.ResponseWriter, r *http.Request) bool {
		http.Error(rw, "down", http.StatusBadGateway)
		return true
	})
	_, down := registryAt(t, fake)
	dc, _ := down.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := dc.Resolve(short, seq(v)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Resolve during an outage: %v, want the context's end", err)
	}
}

// Any payload under a known schema id, event.avsc (the direct path) or a
// producer's evolved schema (read by name), is an event or a classified
// rejection, never a crash.
func FuzzConfluentAvroDecode(f *testing.F) {
	fake := srfake.New()
	defer fake.Close()
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		f.Fatal(err)
	}
	var s map[string]any
	_ = json.Unmarshal([]byte(schemas.AvroSchema), &s)
	s["fields"] = append(s["fields"].([]any), map[string]any{"name": "tags", "type": []any{"null", map[string]any{"type": "map", "values": "string"}}, "default": nil})
	evolved, _ := json.Marshal(s)
	reg := schemas.NewRegistry(cl, nil)
	w, err := reg.Codec(f.Context(), schemas.EncodingAvroConfluent, "a-value", true, false)
	if err != nil {
		f.Fatal(err)
	}
	v2, err := cl.CreateSchema(f.Context(), "b-value", sr.Schema{Schema: string(evolved), Type: sr.TypeAvro})
	if err != nil {
		f.Fatal(err)
	}
	ids := []int{w.ID(), v2.ID}
	e, _ := schemas.JSON{}.Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45.234Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","metadata":{"a":1}}`))
	valid, _ := w.Append(nil, e)
	f.Add(false, valid[5:])
	f.Add(true, append(valid[5:], 2, 2, 'k', 2, 'v', 0))
	f.Fuzz(func(t *testing.T, second bool, payload []byte) {
		id := ids[0]
		if second {
			id = ids[1]
		}
		v := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), payload...)
		if err := reg.Resolve(context.Background(), seq(v)); err != nil {
			t.Fatal(err)
		}
		e, err := w.Decode(v)
		if err != nil {
			if schemas.ClassOf(err) == "" {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		if _, err := w.Append(nil, e); err != nil {
			t.Fatalf("decoded event does not re-encode: %v", err)
		}
	})
}
