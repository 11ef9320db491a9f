// Commits and the group: each partition commits up to its delivered
// prefix, and assignments, revokes and losses add and drop partitions.

package connectors

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CommitMetadataPrefix starts the metadata of every commit a connector
// makes; the RFC 3339 time of the commit follows.
const CommitMetadataPrefix = "firehose delivered_at="

// commit commits each partition (of only, when set) up to its commit
// point, when that moved. The commit's metadata carries the time: commits
// follow deliveries, so it is a delivery time, which firehose status
// reports.
func (w *Worker) commit(ctx context.Context, cl *kgo.Client, only map[tp]bool) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	w.mu.Lock()
	for k, ps := range w.parts {
		if only != nil && !only[k] {
			continue
		}
		if p := ps.commitPoint(); p > ps.committed {
			if offsets[k.topic] == nil {
				offsets[k.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[k.topic][k.partition] = kgo.EpochOffset{Epoch: ps.epoch, Offset: p}
		}
	}
	w.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	stamp := CommitMetadataPrefix + time.Now().UTC().Format(time.RFC3339Nano)
	cctx := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Metadata = &stamp
			}
		}
		return nil
	})
	cl.CommitOffsetsSync(cctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("commit failed; it will be retried with the next commit", "err", err)
			}
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					continue
				}
				if ps := w.parts[tp{t.Topic, p.Partition}]; ps != nil {
					ps.committed = max(ps.committed, offsets[t.Topic][p.Partition].Offset)
				}
			}
		}
	})
}

func (w *Worker) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	w.mu.Lock()
	for t, ps := range m {
		for _, p := range ps {
			ps := newPartState()
			ps.ctx, ps.cancel = context.WithCancel(w.dctx)
			w.parts[tp{t, p}] = ps
		}
	}
	w.mu.Unlock()
	w.ready.Store(true)
	w.log.Info("partitions assigned", "partitions", m)
}

// revoked runs inside the rebalance. It waits for deliveries under way to
// end (they commit what they delivered), then drops the partitions'
// undelivered batches: the next owner reads them again from the last
// commit, so nothing is lost and nothing is committed past delivery.
//
// It waits only for the revoked partitions' deliveries, and at most half
// the group's rebalance timeout: then it cancels them (their batches are
// read again by the next owner), so a partition retrying a failing
// destination cannot hold the rebalance past the group's timeout.
func (w *Worker) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	revoked := map[tp]bool{}
	for t, ps := range m {
		for _, p := range ps {
			revoked[tp{t, p}] = true
		}
	}
	wait := w.o.RevokeTimeout
	timer := time.AfterFunc(wait, func() {
		w.mu.Lock()
		for k := range revoked {
			if ps := w.parts[k]; ps != nil && ps.active > 0 {
				w.log.Warn("revoke: cancelling a delivery that outlasted its wait; the next owner delivers it again", "partition", k.partition, "waited", wait)
				ps.cancel()
			}
		}
		w.changed.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	w.mu.Lock()
	for k := range revoked {
		if ps := w.parts[k]; ps != nil {
			ps.revoked = true
		}
	}
	for {
		busy := false
		for k := range revoked {
			if ps := w.parts[k]; ps != nil && ps.active > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		w.changed.Wait()
	}
	w.mu.Unlock()
	w.commit(ctx, cl, revoked)
	w.drop(m)
	w.log.Info("partitions revoked", "partitions", m)
}

func (w *Worker) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	w.ready.Store(false) // until the group assigns partitions again
	w.drop(m)
	w.log.Warn("partitions lost", "partitions", m)
}

func (w *Worker) drop(m map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t, parts := range m {
		for _, p := range parts {
			if ps := w.parts[tp{t, p}]; ps != nil {
				w.b.forget(ps)
				ps.cancel()
			}
			delete(w.parts, tp{t, p})
		}
	}
}
