package kafkaclient

import (
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A buffer from the pool always holds what is asked of it (a snappy batch
// its decoded size), and records put back come out again cleared.
// (sync.Pool may drop what is put, so reuse itself is not asserted.)
func TestPoolsGiveEnoughAndReuse(t *testing.T) {
	var p Pools
	for _, n := range []int{0, 1, 100, 4096, 4097, 1 << 20, 3<<20 + 1} {
		src := s2.EncodeSnappy(nil, make([]byte, n))
		b := p.GetDecompressBytes(src, kgo.CodecSnappy)
		if len(b) != 0 || cap(b) < n {
			t.Fatalf("snappy batch of %d bytes: len %d cap %d", n, len(b), cap(b))
		}
		if g := p.GetDecompressBytes(make([]byte, n), kgo.CodecGzip); cap(g) < 4*n {
			t.Fatalf("gzip batch of %d bytes: cap %d, want the guess of %d", n, cap(g), 4*n)
		}
		p.PutDecompressBytes(append(b[:0], make([]byte, n)...))
		if again := p.GetDecompressBytes(src, kgo.CodecSnappy); len(again) != 0 || cap(again) < n {
			t.Fatalf("snappy batch of %d bytes, again: len %d cap %d", n, len(again), cap(again))
		}

		r := p.GetRecords(n)
		if len(r) != 0 || cap(r) < n {
			t.Fatalf("%d records: len %d cap %d", n, len(r), cap(r))
		}
		r = r[:n]
		if n > 0 {
			r[0].Value = []byte("kept")
		}
		p.PutRecords(r)
		if r2 := p.GetRecords(n); n > 0 && &r2[:1][0] == &r[0] && r2[:1][0].Value != nil {
			t.Errorf("%d records: reused without being cleared", n)
		}
	}
}
