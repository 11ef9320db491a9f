package schemas_test

import (
	"testing"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// corpus is a fixed, seeded set of ~600-byte lead events.
func corpus(n int) [][]byte {
	g := generator.New(1, 1000)
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.JSON()
	}
	return out
}

func BenchmarkJSONDecode(b *testing.B) {
	benchDecode(b, func(v []byte) bool { _, err := (schemas.JSON{}).Decode(v); return err == nil })
}

// BenchmarkJSONDecodeBorrow is the processor's decode: the event shares
// the record value's memory.
func BenchmarkJSONDecodeBorrow(b *testing.B) {
	benchDecode(b, func(v []byte) bool { _, err := (schemas.JSON{Borrow: true}).Decode(v); return err == nil })
}

// BenchmarkDecodeHeader is the connectors' read of a processed event.
func BenchmarkDecodeHeader(b *testing.B) {
	benchDecode(b, func(v []byte) bool { _, ok := schemas.DecodeHeader(v, "firehose_metadata"); return ok })
}

// benchDecode runs decode over the corpus and reports its throughput.
func benchDecode(b *testing.B, decode func([]byte) bool) {
	evs := corpus(1024)
	b.ReportAllocs()
	var n int64
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		n += int64(len(e))
		if !decode(e) {
			b.Fatal("not decoded")
		}
	}
	b.SetBytes(n / int64(b.N))
}

func BenchmarkJSONEncode(b *testing.B) {
	evs := corpus(1024)
	decoded := make([]*schemas.Event, len(evs))
	for i, e := range evs {
		decoded[i], _ = schemas.JSON{}.Decode(e)
	}
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	for i := 0; b.Loop(); i++ {
		buf, _ = schemas.JSON{}.Append(buf[:0], decoded[i%len(decoded)])
	}
}
