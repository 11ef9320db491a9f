package processor

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/chunks"
)

// The processor writes the records it produces, and their keys and values,
// into shared chunks (internal/chunks): they are made, produced and
// dropped in order, so a chunk pins little beyond what the producer still
// holds. Partitions are processed in parallel, so each goroutine takes its
// chunks from a pool for the moment it writes.
var (
	arenas      = sync.Pool{New: func() any { return new(chunks.Bytes) }}
	recordSlabs = sync.Pool{New: func() any { return new(chunks.RecordSlab) }}
)

// arenaAppend is chunks.Bytes.Append on a pooled chunk.
func arenaAppend(room int, fill func(dst []byte) []byte) []byte {
	a := arenas.Get().(*chunks.Bytes)
	defer arenas.Put(a)
	return a.Append(room, fill)
}

// newRecord returns a zero record of its own, from a pooled slab.
func newRecord() *kgo.Record {
	s := recordSlabs.Get().(*chunks.RecordSlab)
	defer recordSlabs.Put(s)
	return s.New()
}
