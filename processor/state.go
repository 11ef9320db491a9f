package processor

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A stateStage keeps state per raw partition in the compacted state
// topic, inside the processor's transactions: dedupe and profiles. The
// processor's stateStore reads the state topic for all of them at once.
type stateStage interface {
	Stage
	// loader returns what takes the state-topic records of a partition:
	// into fresh state that then replaces what is held (fresh, or nothing
	// held), or into the state held, to catch up with it.
	loader(partition int32, fresh bool) stateLoader
	// Drop forgets partitions that were revoked or lost.
	Drop(partitions []int32)
	// Records appends the state records of a partition's changes in the
	// current transaction.
	Records(partition int32, out []*kgo.Record) []*kgo.Record
	// End ends the transaction: its changes become current if it
	// committed, and are thrown away if not.
	End(committed bool)
}

// A stateLoader takes one partition's state-topic records for a stage.
type stateLoader interface {
	// from is the offset the stage's state was read up to.
	from() int64
	// load applies a record; a stage skips the keys of the others.
	load(r *kgo.Record)
	// done records the offset reached and puts fresh state in place.
	done(next int64)
}

// partLoader is a stateLoader of a stage whose state lives in a partMap.
// A fresh one loads into part, which is put in place when done.
type partLoader[P any] struct {
	parts     *partMap[P]
	partition int32
	fresh     bool
	part      *P
	at        *int64 // the part's offset read up to
	apply     func(*P, *kgo.Record)
	loaded    func(*P) // logs a fresh load
}

func (l *partLoader[P]) from() int64        { return *l.at }
func (l *partLoader[P]) load(r *kgo.Record) { l.apply(l.part, r) }

func (l *partLoader[P]) done(next int64) {
	*l.at = next
	if l.fresh {
		l.parts.put(l.partition, l.part)
		l.loaded(l.part)
	}
}

// stateStore is the one reader of the state topic for the stateful
// stages: a partition's state is read once for all of them when the
// partition is assigned, and once more before its first records (for what
// the previous owner committed after that read: its last transaction may
// commit only after the group handed the partition over).
type stateStore struct {
	stages []stateStage
	topic  string
	kopts  []kgo.Opt

	mu     sync.Mutex
	loaded map[int32]bool // read since assigned
	caught map[int32]bool // read again before first use
}

func newStateStore(topic string, kopts []kgo.Opt, stages ...stateStage) *stateStore {
	return &stateStore{stages: stages, topic: topic, kopts: kopts, loaded: map[int32]bool{}, caught: map[int32]bool{}}
}

// Load reads a partition's state into fresh state for every stage,
// replacing what was held; it is called when the partition is assigned.
func (s *stateStore) Load(ctx context.Context, partition int32) error {
	if len(s.stages) == 0 {
		return nil
	}
	if err := s.read(ctx, partition, true); err != nil {
		return err
	}
	s.mu.Lock()
	s.loaded[partition], s.caught[partition] = true, false
	s.mu.Unlock()
	return nil
}

// Ensure makes a partition's state current before it is used: loaded if
// it is not held, then read once more since the load.
func (s *stateStore) Ensure(ctx context.Context, partition int32) error {
	if len(s.stages) == 0 {
		return nil
	}
	s.mu.Lock()
	loaded, caught := s.loaded[partition], s.caught[partition]
	s.mu.Unlock()
	if !loaded {
		if err := s.Load(ctx, partition); err != nil {
			return err
		}
	}
	if caught {
		return nil
	}
	if err := s.read(ctx, partition, false); err != nil {
		return err
	}
	s.mu.Lock()
	s.caught[partition] = true
	s.mu.Unlock()
	return nil
}

// read reads the partition from where the stages' state ends, each
// record to every stage that has not seen it.
func (s *stateStore) read(ctx context.Context, partition int32, fresh bool) error {
	loaders := make([]stateLoader, len(s.stages))
	from := int64(-1)
	for i, st := range s.stages {
		loaders[i] = st.loader(partition, fresh)
		if f := loaders[i].from(); from < 0 || f < from {
			from = f
		}
	}
	next, err := readPartition(ctx, s.kopts, s.topic, partition, from, func(r *kgo.Record) {
		for _, l := range loaders {
			if r.Offset >= l.from() {
				l.load(r)
			}
		}
	}, -1)
	if err != nil {
		return fmt.Errorf("load the state of partition %d from %s: %w", partition, s.topic, err)
	}
	for _, l := range loaders {
		l.done(next)
	}
	return nil
}

// Drop forgets partitions that were revoked or lost.
func (s *stateStore) Drop(partitions []int32) {
	for _, st := range s.stages {
		st.Drop(partitions)
	}
	s.mu.Lock()
	for _, p := range partitions {
		delete(s.loaded, p)
		delete(s.caught, p)
	}
	s.mu.Unlock()
}

// Records appends every stage's state records of a partition.
func (s *stateStore) Records(partition int32, out []*kgo.Record) []*kgo.Record {
	for _, st := range s.stages {
		out = st.Records(partition, out)
	}
	return out
}

// End ends the transaction for every stage.
func (s *stateStore) End(committed bool) {
	for _, st := range s.stages {
		st.End(committed)
	}
}
