package processor

import (
	"sync"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The arena is memory that the processor writes the bytes of its output
// records into, one piece after another: their keys and values. Each piece
// is a capped slice of a shared chunk, so a piece costs no allocation of
// its own, and the collector tracks one chunk instead of hundreds of
// pieces. A chunk is freed when the last
// piece in it is; pieces are made, produced and dropped in order, so a
// chunk pins little beyond what the producer still holds.
type arena struct{ buf []byte }

var arenas = sync.Pool{New: func() any { return new(arena) }}

const (
	arenaChunk = 64 << 10
	// maxArenaRoom is the most room a piece may ask for; larger pieces
	// have memory of their own rather than waste chunks.
	maxArenaRoom = arenaChunk / 8
)

// arenaAppend calls fill with an empty slice with room for at least room
// bytes and returns what fill appended to it, capped so that appending to
// it never writes over another piece. What outgrows the room has memory of
// its own, from append.
func arenaAppend(room int, fill func(dst []byte) []byte) []byte {
	if room > maxArenaRoom {
		b := fill(make([]byte, 0, room))
		return b[:len(b):len(b)]
	}
	a := arenas.Get().(*arena)
	defer arenas.Put(a)
	if cap(a.buf)-len(a.buf) < room {
		a.buf = make([]byte, 0, arenaChunk)
	}
	free := a.buf[len(a.buf):len(a.buf)]
	b := fill(free)
	if cap(b) == cap(free) && unsafe.SliceData(b) == unsafe.SliceData(free) {
		a.buf = a.buf[:len(a.buf)+len(b)] // it fit: the chunk keeps it
	}
	return b[:len(b):len(b)]
}

// recordSlab hands out the processor's output records from a shared
// slice, as the arena hands out their bytes: one allocation per
// recordSlabSize records rather than one each.
type recordSlab struct{ recs []kgo.Record }

var recordSlabs = sync.Pool{New: func() any { return new(recordSlab) }}

const recordSlabSize = 128

// newRecord returns a zero record of its own.
func newRecord() *kgo.Record {
	s := recordSlabs.Get().(*recordSlab)
	defer recordSlabs.Put(s)
	if len(s.recs) == 0 {
		s.recs = make([]kgo.Record, recordSlabSize)
	}
	r := &s.recs[0]
	s.recs = s.recs[1:]
	return r
}
