package kafkaclient

import (
	"math/bits"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Pools reuses what a consuming client allocates for each fetched batch:
// the buffer the batch is decompressed into, and its Records (kgo.WithPools).
// A client given Pools returns a batch's memory to them once every record
// of the batch was recycled (kgo.Record.Recycle), so a caller recycles a
// record only when nothing refers to its key, value or headers any more; a
// record never recycled is simply collected.
type Pools struct {
	bytes [33]sync.Pool // by size class: capacity 1<<i
	recs  [33]sync.Pool
}

var (
	_ kgo.PoolDecompressBytes = (*Pools)(nil)
	_ kgo.PoolRecords         = (*Pools)(nil)
)

// class is the smallest i with 1<<i >= n.
func class(n int) int { return bits.Len(uint(max(n, 1) - 1)) }

// GetDecompressBytes implements kgo.PoolDecompressBytes. Snappy batches
// say their decoded size; for the others a guess of four times the
// compressed size is grown by the codec when short.
func (p *Pools) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	n := 4 * len(compressed)
	if codec == kgo.CodecSnappy {
		if l, err := s2.DecodedLen(compressed); err == nil {
			n = l
		}
	}
	c := class(n)
	if c >= len(p.bytes) {
		return nil
	}
	if b, ok := p.bytes[c].Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 0, 1<<c)
}

// PutDecompressBytes implements kgo.PoolDecompressBytes.
func (p *Pools) PutDecompressBytes(b []byte) {
	// Kept in the class its capacity fills, so a Get of that class
	// always gets enough.
	c := bits.Len(uint(cap(b))) - 1
	if c < 0 || c >= len(p.bytes) {
		return
	}
	b = b[:0]
	p.bytes[c].Put(&b)
}

// GetRecords implements kgo.PoolRecords.
func (p *Pools) GetRecords(n int) []kgo.Record {
	c := class(n)
	if c >= len(p.recs) {
		return make([]kgo.Record, 0, n)
	}
	if r, ok := p.recs[c].Get().(*[]kgo.Record); ok {
		return *r
	}
	return make([]kgo.Record, 0, 1<<c)
}

// PutRecords implements kgo.PoolRecords.
func (p *Pools) PutRecords(r []kgo.Record) {
	c := bits.Len(uint(cap(r))) - 1
	if c < 0 || c >= len(p.recs) {
		return
	}
	clear(r[:cap(r)])
	r = r[:0]
	p.recs[c].Put(&r)
}
