package processor

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// partMap is a stage's state per raw partition, read from the state topic
// (dedupe's and the profiles stage's): loaded when the partition is
// assigned, read once more before its first use, forgotten when it goes.
type partMap[P any] struct {
	// m is read for every record and replaced, under mu, only when
	// partitions come and go: a copy on write, so that readers on
	// several partitions share no lock.
	m      atomic.Pointer[map[int32]*P]
	mu     sync.Mutex
	caught map[int32]bool // read again since loaded
}

func newPartMap[P any]() *partMap[P] {
	pm := &partMap[P]{caught: map[int32]bool{}}
	pm.m.Store(&map[int32]*P{})
	return pm
}

func (pm *partMap[P]) get(partition int32) *P {
	return (*pm.m.Load())[partition]
}

// update replaces m with a changed copy; mu must be held.
func (pm *partMap[P]) update(change func(m map[int32]*P)) {
	m := maps.Clone(*pm.m.Load())
	change(m)
	pm.m.Store(&m)
}

// put replaces a partition's state with a freshly loaded one.
func (pm *partMap[P]) put(partition int32, v *P) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.update(func(m map[int32]*P) { m[partition] = v })
	pm.caught[partition] = false
}

// drop forgets partitions that were revoked or lost.
func (pm *partMap[P]) drop(partitions []int32) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.update(func(m map[int32]*P) {
		for _, p := range partitions {
			delete(m, p)
		}
	})
	for _, p := range partitions {
		delete(pm.caught, p)
	}
}

// each calls fn for every partition's state, with the map locked against
// puts and drops.
func (pm *partMap[P]) each(fn func(*P)) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, v := range *pm.m.Load() {
		fn(v)
	}
}

// partitions returns the partitions held, in order.
func (pm *partMap[P]) partitions() []int32 {
	return slices.Sorted(maps.Keys(*pm.m.Load()))
}

// ensure makes a partition's state current before its first records are
// processed: load puts it when it is absent, and read then runs once after
// assignment, for what the partition's previous owner committed after the
// load (its last transaction may commit only after the group handed the
// partition over).
func (pm *partMap[P]) ensure(ctx context.Context, partition int32, load func(context.Context, int32) error, read func(context.Context, int32, *P) error) error {
	v := pm.get(partition)
	if v == nil {
		if err := load(ctx, partition); err != nil {
			return err
		}
		v = pm.get(partition)
	}
	pm.mu.Lock()
	caught := pm.caught[partition]
	pm.mu.Unlock()
	if caught {
		return nil
	}
	if err := read(ctx, partition, v); err != nil {
		return err
	}
	pm.mu.Lock()
	pm.caught[partition] = true
	pm.mu.Unlock()
	return nil
}
