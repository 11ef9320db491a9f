package processor

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/chunks"
)

// Pieces from the arena keep their bytes however many are made, of
// whatever size, from several goroutines; appending to one never writes
// over another; a piece that outgrows its room, or asks for more than a
// chunk should give, is whole all the same.
func TestArenaPiecesKeepTheirBytes(t *testing.T) {
	const goroutines, n = 4, 3000
	piece := func(g, i int) []byte {
		return bytes.Repeat(fmt.Appendf(nil, "<%d.%d>", g, i), 1+(i*31)%(chunks.MaxRoom/4))
	}
	got := inParallel(goroutines, n, func(g, i int) []byte {
		want := piece(g, i)
		room := len(want)
		switch i % 4 {
		case 1:
			room = len(want) / 2 // outgrown
		case 2:
			room = chunks.MaxRoom + 1 // too large for a chunk
		}
		// Room given back: nothing appended.
		if b := arenaAppend(64, func(dst []byte) []byte { return dst }); len(b) != 0 {
			t.Errorf("an empty piece has %d bytes", len(b))
		}
		return arenaAppend(room, func(dst []byte) []byte { return append(dst, want...) })
	})
	for g := range goroutines {
		for i, b := range got[g] {
			_ = append(b, "garbage"...)
			if want := piece(g, i); !bytes.Equal(b, want) {
				t.Fatalf("piece %d.%d is %.60q..., want %.60q...", g, i, b, want)
			}
		}
	}
}

// Records from the slab are zero and each its own, from several
// goroutines at once.
func TestNewRecordsAreZeroAndDistinct(t *testing.T) {
	const goroutines, n = 4, 1000
	got := inParallel(goroutines, n, func(g, i int) *kgo.Record {
		r := newRecord()
		if r.Topic != "" || r.Key != nil || r.Value != nil || r.Offset != 0 {
			t.Errorf("a new record is not zero: %+v", r)
		}
		r.Value = fmt.Appendf(nil, "%d.%d", g, i)
		return r
	})
	for g := range goroutines {
		for i, r := range got[g] {
			if want := fmt.Sprintf("%d.%d", g, i); string(r.Value) != want {
				t.Fatalf("record %s holds %s: another took it too", want, r.Value)
			}
		}
	}
}

// inParallel calls fn(g, i) for i from 0 to n-1 on each of goroutines
// goroutines g at once, and returns the results by g and i.
func inParallel[T any](goroutines, n int, fn func(g, i int) T) [][]T {
	out := make([][]T, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				out[g] = append(out[g], fn(g, i))
			}
		}()
	}
	wg.Wait()
	return out
}
