package schemas_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/firehose/firehose/schemas"
)

// zz appends n as an Avro long.
func zz(b []byte, n int64) []byte { return binary.AppendUvarint(b, uint64(n<<1^(n>>63))) }

func framed(id int, payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), payload...)
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A producer may register any schema and write any bytes under it. The
// ones that would make a reader allocate without bound or recurse past
// its stack are refused by their schema, or by the payload's counts, as
// decode rejections that say why; none allocates more than a few MiB.
func TestAvroBombsAreRejectedWithinMemory(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	c, _ := reg.Codec(t.Context(), schemas.EncodingAvroConfluent, "", true, false)
	register := func(subject, text string) int {
		t.Helper()
		ss, err := cl.CreateSchema(t.Context(), subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}

	// array<array<null>>: 250 inner arrays of 2^31 nulls each, in 1.5 KB.
	nulls := register("nulls-value", `{"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":{"type":"array","items":"null"}}}]}`)
	var nullsBomb []byte
	nullsBomb = zz(nullsBomb, 250)
	for range 250 {
		nullsBomb = zz(zz(nullsBomb, 1<<31-1), 0)
	}
	nullsBomb = zz(nullsBomb, 0)

	// A recursive schema, nested as deep as 1 MiB of bytes allows.
	node := register("node-value", `{"type":"record","name":"Node","fields":[{"name":"n","type":["null","Node"]}]}`)
	nodeBomb := append(make([]byte, 0, 1<<20), make([]byte, 1<<20-1)...)
	for i := range nodeBomb {
		nodeBomb[i] = 2 // branch 1: another Node
	}
	nodeBomb = append(nodeBomb, 0)

	// A legitimate array whose block count promises more than the bytes hold.
	longs := register("longs-value", `{"type":"record","name":"L","fields":[{"name":"a","type":{"type":"array","items":"long"}}]}`)
	hugeCount := zz(nil, 1<<40)
	// Empty inner arrays cost a byte each: more elements than allowed.
	nested := register("nested-value", `{"type":"record","name":"N","fields":[{"name":"a","type":{"type":"array","items":{"type":"array","items":"long"}}}]}`)
	manyEmpty := zz(nil, schemas.MaxAvroElements+1)
	manyEmpty = append(manyEmpty, make([]byte, schemas.MaxAvroElements+1)...)
	manyEmpty = zz(manyEmpty, 0)

	// A schema over the size bound.
	var fields []string
	for i := range 2000 {
		fields = append(fields, fmt.Sprintf(`{"name":"field_with_a_long_name_%06d","type":"string"}`, i))
	}
	big := register("big-value", `{"type":"record","name":"Big","fields":[`+strings.Join(fields, ",")+`]}`)

	for _, tc := range []struct {
		name, want string
		v          []byte
	}{
		{"array of arrays of null", "items take no bytes", framed(nulls, nullsBomb)},
		{"recursive schema", "record Node contains itself", framed(node, nodeBomb)},
		{"block count past the bytes", "a block of 1099511627776 items where 0 bytes remain", framed(longs, hugeCount)},
		{"too many elements", fmt.Sprintf("more than %d array items", schemas.MaxAvroElements), framed(nested, manyEmpty)},
		{"schema over the size bound", "over the 65536 read", framed(big, []byte{0})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = decode(t, c, tc.v) })
			if err == nil || schemas.ClassOf(err) != schemas.ClassDecode || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want a decode rejection containing %q", err, tc.want)
			}
			if n > 16<<20 {
				t.Fatalf("rejecting it allocated %d MiB", n>>20)
			}
		})
	}
}

// A value holds one record: bytes after it (a second record, say, from a
// producer that concatenated two) are a rejection, not silently dropped,
// on the generic path, the event.avsc path and the single-object codec.
func TestBytesAfterAnAvroRecordAreRejected(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	ev, _ := cl.CreateSchema(ctx, "ev-value", sr.Schema{Schema: schemas.AvroSchema, Type: sr.TypeAvro})
	evolved, _ := cl.CreateSchema(ctx, "evolved-value", sr.Schema{Schema: evolvedSchema(t), Type: sr.TypeAvro})
	c, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	e := corpusEvents(t, 1)[0]
	e.Extra = nil
	one, err := schemas.Avro{}.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	body := one[10:] // without the single-object header
	// channel: null is one more byte (branch 0) on the evolved record.
	evolvedBody := append(append([]byte{}, body...), 0)
	cases := map[string][]byte{
		"event.avsc":    framed(ev.ID, append(append([]byte{}, body...), body...)),
		"evolved":       framed(evolved.ID, append(append([]byte{}, evolvedBody...), evolvedBody...)),
		"single object": append(append([]byte{}, one...), body...),
	}
	for name, v := range cases {
		var err error
		if name == "single object" {
			_, err = schemas.Avro{}.Decode(v)
		} else {
			_, err = decode(t, c, v)
		}
		if err == nil || !strings.Contains(err.Error(), "bytes follow the record") {
			t.Errorf("%s: %v, want a rejection of the bytes after the record", name, err)
		}
	}
	// One record alone still reads, on each path.
	if _, err := decode(t, c, framed(evolved.ID, evolvedBody)); err != nil {
		t.Fatal(err)
	}
	if _, err := (schemas.Avro{}).Decode(one); err != nil {
		t.Fatal(err)
	}
}

// An evolved producer schema whose extra is null leaves no "extra" field;
// extra written as an Avro record or map has its members merged into the
// event's top level, as extra as JSON text has.
func TestAvroExtraMergesAndNullIsNoField(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	c, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	withExtra := func(extraType any) int {
		var s map[string]any
		_ = json.Unmarshal([]byte(schemas.AvroSchema), &s)
		fs := s["fields"].([]any)
		for i, f := range fs {
			if f.(map[string]any)["name"] == "extra" {
				fs[i] = map[string]any{"name": "extra", "type": extraType, "default": nil}
			}
		}
		b, _ := json.Marshal(s)
		ss, err := cl.CreateSchema(ctx, fmt.Sprintf("x%d-value", time.Now().UnixNano()), sr.Schema{Schema: string(b), Type: sr.TypeAvro})
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	e := corpusEvents(t, 1)[0]
	e.Extra = nil
	one, _ := schemas.Avro{}.Append(nil, e)
	// event.avsc's extra is the last field, ["null","string"]: its null
	// is the body's last byte.
	prefix := one[10 : len(one)-1]

	// The README's evolution: a new field, extra null.
	evolvedID, _ := cl.CreateSchema(ctx, "evolved-value", sr.Schema{Schema: evolvedSchema(t), Type: sr.TypeAvro})
	got, err := decode(t, c, framed(evolvedID.ID, append(append(append([]byte{}, prefix...), 0), 0)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Extra.Get("extra") != nil || len(got.Extra) != 1 || string(got.Extra.Get("channel")) != "null" {
		t.Fatalf("extra fields %s, want channel alone", got.Extra)
	}

	record := withExtra([]any{"null", map[string]any{"type": "record", "name": "X", "fields": []any{map[string]any{"name": "campaign", "type": "string"}}}})
	got, err = decode(t, c, framed(record, append(zz(append(append([]byte{}, prefix...), 2), 3), "abc"...)))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Extra.Get("campaign")) != `"abc"` || got.Extra.Get("extra") != nil {
		t.Fatalf("extra as a record read as %s, want campaign merged", got.Extra)
	}

	mapped := withExtra([]any{"null", map[string]any{"type": "map", "values": "long"}})
	v := zz(append(append([]byte{}, prefix...), 2), 1)
	v = zz(append(zz(v, 4), "clik"...), 21)
	v = zz(v, 0)
	got, err = decode(t, c, framed(mapped, v))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Extra.Get("clik")) != "21" || got.Extra.Get("extra") != nil {
		t.Fatalf("extra as a map read as %s, want clik merged", got.Extra)
	}
}

// An id the registry refuses (403 for a subject the credentials may not
// read) is not retried before every poll: its values are rejected with the
// registry's answer at once, and it is asked again only after a while.
// 429 and 5xx are retried.
func TestRegistryRefusalIsRememberedNotRetried(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	ss, _ := cl.CreateSchema(ctx, "secret-value", sr.Schema{Schema: schemas.AvroSchema, Type: sr.TypeAvro})
	var asked, throttled atomic.Int32
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != fmt.Sprintf("/schemas/ids/%d", ss.ID) {
			return false
		}
		if throttled.Add(-1) >= 0 {
			http.Error(w, `{"error_code":429,"message":"slow down"}`, http.StatusTooManyRequests)
			return true
		}
		asked.Add(1)
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error_code":40301,"message":"User is denied operation Read on Subject: secret-value"}`))
		return true
	})
	now := time.Now()
	schemas.SetRegistryClock(reg, func() time.Time { return now })
	c, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	v := framed(ss.ID, []byte{0})
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for range 3 {
		if err := c.Resolve(short, seq(v)); err != nil {
			t.Fatalf("Resolve: %v, want the refusal remembered", err)
		}
		_, err := c.Decode(v)
		if err == nil || schemas.ClassOf(err) != schemas.ClassDecode || !strings.Contains(err.Error(), "refused schema id") || !strings.Contains(err.Error(), "403 User is denied operation Read") {
			t.Fatalf("%v, want a decode rejection with the registry's answer", err)
		}
	}
	if asked.Load() != 1 {
		t.Fatalf("the registry was asked %d times, want once", asked.Load())
	}
	now = now.Add(6 * time.Minute)
	throttled.Store(2)
	if err := c.Resolve(short, seq(v)); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 2 || throttled.Load() >= 0 {
		t.Fatalf("after the refusal expired: asked %d, throttled left %d; want 429s retried, then asked again", asked.Load(), throttled.Load())
	}
}

// The cache keeps parsed schemas within its byte budget, least recently
// used first out; a value whose schema was evicted still decodes.
func TestSchemaCacheKeepsItsBudget(t *testing.T) {
	fake, reg := registry(t)
	cl, _ := registryAt(t, fake)
	ctx := t.Context()
	const budget = 1 << 20
	schemas.SetRegistryBudget(reg, budget)
	c, _ := reg.Codec(ctx, schemas.EncodingAvroConfluent, "", true, false)
	e := corpusEvents(t, 1)[0]
	e.Extra = nil
	one, _ := schemas.Avro{}.Append(nil, e)
	var vs [][]byte
	for i := range 40 {
		// event.avsc with a distinct doc: a distinct schema of ~3 KB.
		text := strings.Replace(schemas.AvroSchema, `"name"`, fmt.Sprintf(`"doc":"%s","name"`, strings.Repeat("x", 2000)+fmt.Sprint(i)), 1)
		ss, err := cl.CreateSchema(ctx, fmt.Sprintf("s%d-value", i), sr.Schema{Schema: text, Type: sr.TypeAvro})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, framed(ss.ID, one[10:]))
	}
	if err := c.Resolve(ctx, seq(vs...)); err != nil {
		t.Fatal(err)
	}
	cost, ids := schemas.RegistryCost(reg)
	if cost > budget || ids >= 40 {
		t.Fatalf("the cache holds %d ids costing %d, budget %d", ids, cost, budget)
	}
	for i, v := range vs {
		if _, err := c.Decode(v); err != nil {
			t.Fatalf("value %d, its schema evicted: %v", i, err)
		}
	}
}

// Many unknown ids are asked for at once, not one request at a time, and
// never more than a few at once.
func TestUnknownIDsAreFetchedConcurrently(t *testing.T) {
	fake, reg := registry(t)
	var inFlight, most atomic.Int32
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		return false // then 404: not in the registry
	})
	c, _ := reg.Codec(t.Context(), schemas.EncodingAvroConfluent, "", true, false)
	var vs [][]byte
	for id := range 64 {
		vs = append(vs, framed(10000+id, []byte{0}))
	}
	if err := c.Resolve(t.Context(), seq(vs...)); err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m < 2 || m > 8 {
		t.Fatalf("at most %d requests at once, want between 2 and 8", m)
	}
	for _, v := range vs {
		if _, err := c.Decode(v); err == nil || !strings.Contains(err.Error(), "is not in the schema registry") {
			t.Fatalf("%v", err)
		}
	}
}

// Any writer schema with any payload is an event or a classified
// rejection, never a crash, and never costs more than a bounded amount of
// memory, whatever the counts in its bytes say.
func FuzzAvroSchemaAndPayload(f *testing.F) {
	f.Add(`{"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":{"type":"array","items":"null"}}}]}`, zz(zz(zz(nil, 3), 1<<31-1), 0))
	f.Add(`{"type":"record","name":"Node","fields":[{"name":"n","type":["null","Node"]}]}`, []byte{2, 2, 2, 2, 0})
	f.Add(`{"type":"record","name":"L","fields":[{"name":"a","type":{"type":"array","items":"long"}},{"name":"m","type":{"type":"map","values":"string"}}]}`, zz(nil, 1<<40))
	f.Add(`{"type":"record","name":"E","fields":[{"name":"event_id","type":"string"},{"name":"extra","type":["null",{"type":"map","values":"double"}]}]}`, []byte{2, 'e', 2, 2, 2, 'k', 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0})
	f.Add(`{"type":"record","name":"F","fields":[{"name":"d","type":{"type":"fixed","name":"D","size":4,"logicalType":"decimal","precision":8,"scale":2}},{"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}]}`, []byte{0xff, 0xff, 0xfe, 0x0c, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add(schemas.AvroSchema, []byte{0})
	f.Fuzz(func(t *testing.T, text string, payload []byte) {
		var (
			e   *schemas.Event
			err error
		)
		n := allocated(func() { e, err = schemas.DecodeWithWriterSchema(text, payload) })
		// What a value may cost: its JSON (bounded), its elements
		// (bounded), and the schema's parse (its text is bounded).
		if limit := uint64(64<<20 + 64*len(payload) + 256*len(text)); n > limit {
			t.Fatalf("decoding %d bytes under a %d-byte schema allocated %d bytes", len(payload), len(text), n)
		}
		if err != nil {
			if schemas.ClassOf(err) == "" {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		if _, err := (schemas.JSON{}).Append(nil, e); err != nil {
			t.Fatalf("decoded event does not re-encode: %v", err)
		}
	})
}
