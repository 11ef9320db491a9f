package generator

import (
	"reflect"
	"testing"
	"time"
)

func TestSequencesIncreaseAndDuplicatesAreExact(t *testing.T) {
	g := New(7, 50)
	g.DuplicateRate = 0.05
	last := map[string]int64{}
	lastEvent := map[string]any{}
	dups := 0
	for range 20000 {
		e := g.Next()
		if prev, ok := last[e.ResourceID]; ok && e.Sequence <= prev {
			if e.Sequence != prev || !reflect.DeepEqual(lastEvent[e.ResourceID], *e) {
				t.Fatalf("%s: sequence %d after %d and not an exact duplicate", e.ResourceID, e.Sequence, prev)
			}
			dups++
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		last[e.ResourceID] = e.Sequence
		lastEvent[e.ResourceID] = *e
	}
	if dups < 500 || dups > 1500 {
		t.Fatalf("%d duplicates in 20000 at rate 0.05", dups)
	}
}

func TestDeterministic(t *testing.T) {
	clock := func() time.Time { return time.Date(2024, 1, 15, 14, 30, 0, 0, time.UTC) }
	a, b := New(1, 10), New(1, 10)
	a.Now, b.Now = clock, clock
	for range 100 {
		if x, y := a.JSON(), b.JSON(); string(x) != string(y) {
			t.Fatalf("same seed, different events:\n%s\n%s", x, y)
		}
	}
}
