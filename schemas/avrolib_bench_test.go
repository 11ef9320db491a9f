package schemas_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/firehose/firehose/schemas"
)

// The Avro codec moved from goavro to hamba/avro. goavro stays as a test
// dependency: an independent implementation that checks hamba's bytes.

func goavroCodec(t testing.TB) *goavro.Codec {
	c, err := goavro.NewCodec(schemas.AvroSchema)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func corpusEvents(t testing.TB, n int) []*schemas.Event {
	var evs []*schemas.Event
	for _, raw := range corpus(n) {
		e, err := schemas.JSON{}.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// goavroNative is an event in goavro's native form of event.avsc.
func goavroNative(e *schemas.Event) map[string]any {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return goavro.Union("string", s)
	}
	m := map[string]any{
		"event_id": e.EventID, "timestamp": e.Timestamp.UTC(), "account_id": e.AccountID, "resource_id": e.ResourceID,
		"sequence": e.Sequence, "event_type": e.EventType, "resource_type": opt(e.ResourceType), "flow_id": opt(e.FlowID),
		"lead_id": opt(e.LeadID), "entity_type": opt(e.EntityType), "entity_id": opt(e.EntityID), "outcome": opt(e.Outcome),
		"duration_ms": nil, "metadata": opt(string(e.Metadata)), "lead_data": opt(string(e.LeadData)), "extra": nil,
	}
	if e.DurationMS != nil {
		m["duration_ms"] = goavro.Union("long", *e.DurationMS)
	}
	return m
}

// The codec writes, byte for byte, what goavro writes for the same events
// (single-object header included), and reads what goavro writes.
func TestAvroCodecAgreesWithGoavro(t *testing.T) {
	c := goavroCodec(t)
	for i, e := range corpusEvents(t, 1024) {
		e.Extra = nil
		ours, err := schemas.Avro{}.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := c.SingleFromNative(nil, goavroNative(e))
		if err != nil {
			t.Fatal(err)
		}
		// The bodies agree; the headers differ only in the fingerprint
		// (see TestAvroFingerprintIsCanonical).
		if !bytes.Equal(ours[10:], theirs[10:]) || !bytes.Equal(ours[:2], theirs[:2]) {
			t.Fatalf("event %d: hamba wrote %x, goavro %x", i, ours, theirs)
		}
		back, err := schemas.Avro{}.Decode(theirs)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		again, _ := schemas.Avro{}.Append(nil, back)
		if !bytes.Equal(again, ours) {
			t.Fatalf("event %d: read back differs", i)
		}
	}
}

// BenchmarkAvroDecodeGoavro is goavro's decoding alone, into its native
// form; BenchmarkAvroDecode decodes into an Event and validates it.
func BenchmarkAvroDecodeGoavro(b *testing.B) {
	c := goavroCodec(b)
	var vals [][]byte
	for _, e := range corpusEvents(b, 1024) {
		e.Extra = nil
		v, err := c.SingleFromNative(nil, goavroNative(e))
		if err != nil {
			b.Fatal(err)
		}
		vals = append(vals, v)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := c.NativeFromSingle(vals[i%len(vals)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroDecode(b *testing.B) {
	var vals [][]byte
	for _, e := range corpusEvents(b, 1024) {
		v, _ := schemas.Avro{}.Append(nil, e)
		vals = append(vals, v)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := (schemas.Avro{}).Decode(vals[i%len(vals)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroEncodeGoavro(b *testing.B) {
	c := goavroCodec(b)
	evs := corpusEvents(b, 1024)
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	for i := 0; b.Loop(); i++ {
		var err error
		if buf, err = c.SingleFromNative(buf[:0], goavroNative(evs[i%len(evs)])); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroEncode(b *testing.B) {
	evs := corpusEvents(b, 1024)
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	for i := 0; b.Loop(); i++ {
		var err error
		if buf, err = (schemas.Avro{}).Append(buf[:0], evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// crc64Avro is the fingerprint algorithm of the Avro specification,
// written from its text, independent of both libraries.
func crc64Avro(b []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	var table [256]uint64
	for i := range table {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		table[i] = fp
	}
	fp := uint64(empty)
	for _, c := range b {
		fp = (fp >> 8) ^ table[byte(fp)^c]
	}
	return fp
}

// The single-object header carries the fingerprint of event.avsc's
// Parsing Canonical Form as the specification defines it (logicalType
// stripped, "long" in its simple form), little-endian, so Java's and
// Python's single-object readers find the schema; and Decode still reads
// what goavro wrote, whose canonical form kept {"type":"long"}.
func TestAvroFingerprintIsCanonical(t *testing.T) {
	const pcf = `{"name":"io.firehose.Event","type":"record","fields":[{"name":"event_id","type":"string"},{"name":"timestamp","type":"long"},{"name":"account_id","type":"string"},{"name":"resource_id","type":"string"},{"name":"sequence","type":"long"},{"name":"event_type","type":"string"},{"name":"resource_type","type":["null","string"]},{"name":"flow_id","type":["null","string"]},{"name":"lead_id","type":["null","string"]},{"name":"entity_type","type":["null","string"]},{"name":"entity_id","type":["null","string"]},{"name":"outcome","type":["null","string"]},{"name":"duration_ms","type":["null","long"]},{"name":"metadata","type":["null","string"]},{"name":"lead_data","type":["null","string"]},{"name":"extra","type":["null","string"]}]}`
	e := corpusEvents(t, 1)[0]
	v, err := schemas.Avro{}.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint64(v[2:10]), crc64Avro([]byte(pcf)); got != want {
		t.Fatalf("fingerprint %x, want %x", got, want)
	}
	c := goavroCodec(t)
	if got, want := binary.LittleEndian.Uint64(must(c.SingleFromNative(nil, goavroNative(e)))[2:10]), crc64Avro([]byte(c.CanonicalSchema())); got != want {
		t.Fatalf("goavro's fingerprint %x is not the CRC of its canonical form (%x)", got, want)
	}
	if _, err := (schemas.Avro{}).Decode(append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, v[10:]...)); err == nil {
		t.Fatal("a foreign fingerprint was read as event.avsc")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
