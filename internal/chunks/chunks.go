// Package chunks hands out small pieces of memory from shared chunks: the
// bytes and records a stage keeps for a while, in order, then drops. A
// piece costs no allocation of its own, and the collector tracks one chunk
// instead of hundreds of pieces. A chunk is freed when the last piece in
// it is, so pieces that live and die in the order they were made pin
// little more than themselves.
//
// The processor writes the records it produces into them; the connectors
// copy the records they keep out of the client's fetch buffers into them.
package chunks

import (
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// Size is the size of a chunk of bytes.
	Size = 64 << 10
	// MaxRoom is the most room a piece may ask for: a larger piece has
	// memory of its own, rather than waste most of a chunk.
	MaxRoom = Size / 4
	// Records is how many records a chunk of records holds.
	Records = 256
)

// Bytes hands out pieces of byte chunks. The zero value is ready to use;
// it is not safe for concurrent use.
type Bytes struct{ buf []byte }

// Append calls fill with an empty slice that has room for at least room
// bytes and returns what fill appended to it, capped so that appending to
// it never writes over another piece. What outgrows the room has memory
// of its own, from append.
func (a *Bytes) Append(room int, fill func(dst []byte) []byte) []byte {
	if room > MaxRoom {
		b := fill(make([]byte, 0, room))
		return b[:len(b):len(b)]
	}
	if cap(a.buf)-len(a.buf) < room {
		a.buf = make([]byte, 0, Size)
	}
	free := a.buf[len(a.buf):len(a.buf)]
	b := fill(free)
	if cap(b) == cap(free) && unsafe.SliceData(b) == unsafe.SliceData(free) {
		a.buf = a.buf[:len(a.buf)+len(b)] // it fit: the chunk keeps it
	}
	return b[:len(b):len(b)]
}

// Copy returns a copy of b: nil for nil, empty for empty (Kafka tells a
// null value from an empty one).
func (a *Bytes) Copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	return a.Append(len(b), func(dst []byte) []byte { return append(dst, b...) })
}

// RecordSlab hands out records from chunks of Records. The zero value is
// ready to use; it is not safe for concurrent use.
type RecordSlab struct{ recs []kgo.Record }

// New returns a zero record of its own.
func (s *RecordSlab) New() *kgo.Record {
	if len(s.recs) == 0 {
		s.recs = make([]kgo.Record, Records)
	}
	r := &s.recs[0]
	s.recs = s.recs[1:]
	return r
}
