package processor

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bounds are a partition's first offset and its last stable offset: a
// read_committed reader has seen everything committed once its position
// reaches end.
type bounds struct{ start, end int64 }

// stableBounds lists the bounds of every partition of topic.
func stableBounds(ctx context.Context, cl *kgo.Client, topic string) (map[int32]bounds, error) {
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]bounds{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", o.Partition, o.Err))
			return
		}
		b := bounds{end: o.Offset}
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Err == nil {
			b.start = s.Offset
		}
		out[o.Partition] = b
	})
	return out, errors.Join(errs...)
}

// caughtUp reports whether next (the next offset to read, by partition)
// has reached every partition's end.
func caughtUp(b map[int32]bounds, next map[int32]int64) bool {
	for p, pb := range b {
		if pb.end > pb.start && next[p] < pb.end {
			return false
		}
	}
	return true
}

// readPartition reads one partition of topic, read_committed, from offset
// from (or its start, if later) to its last stable offset as of the call,
// calls fn for each data record in order, and returns the offset it
// stopped at. Control records are kept by the client only to know exactly
// when the end is reached.
//
// until, when not negative, stops the read there instead (one record:
// from+1).
func readPartition(ctx context.Context, kopts []kgo.Opt, topic string, partition int32, from int64, fn func(*kgo.Record), until int64) (int64, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return from, err
	}
	defer cl.Close()
	all, err := stableBounds(ctx, cl, topic)
	if err != nil {
		return from, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	b, ok := all[partition]
	if !ok {
		return from, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	next := max(from, b.start)
	end := b.end
	if until >= 0 {
		end = min(end, until)
	}
	for next < end {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return next, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return next, fmt.Errorf("read %s[%d]: %w", topic, partition, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
	}
	return next, nil
}
