package schemas_test

import (
	"testing"

	"github.com/firehose/firehose/internal/generator"
	"github.com/firehose/firehose/schemas"
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
	evs := corpus(1024)
	b.ReportAllocs()
	var n int64
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		n += int64(len(e))
		if _, err := (schemas.JSON{}).Decode(e); err != nil {
			b.Fatal(err)
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

// BenchmarkJSONDecodeBorrow is the processor's decode: the event shares
// the record value's memory.
func BenchmarkJSONDecodeBorrow(b *testing.B) {
	evs := corpus(1024)
	b.ReportAllocs()
	var n int64
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		n += int64(len(e))
		if _, err := (schemas.JSON{Borrow: true}).Decode(e); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n / int64(b.N))
}

// BenchmarkDecodeHeader is the connectors' read of a processed event.
func BenchmarkDecodeHeader(b *testing.B) {
	evs := corpus(1024)
	b.ReportAllocs()
	var n int64
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		n += int64(len(e))
		if _, ok := schemas.DecodeHeader(e, "firehose_metadata"); !ok {
			b.Fatal("not decoded")
		}
	}
	b.SetBytes(n / int64(b.N))
}
