// Commits and the group: each partition commits up to its delivered
// prefix, and assignments, revokes and losses add and drop partitions.

package connectors

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CommitMetadataPrefix starts the metadata of every commit a connector
// makes; the RFC 3339 time of the commit follows, then for an object
// destination the cuts of its pending batches (see cuts.go).
const CommitMetadataPrefix = "firehose delivered_at="

// commit commits each partition (of only, when set) up to its commit
// point, when that moved or, for an object destination, when batches wait
// for their cuts to be recorded. The commit's metadata carries the time:
// commits follow deliveries, so it is a delivery time, which firehose
// status reports. It reports whether cuts were newly recorded, so that
// their batches may be delivered.
func (w *Worker) commit(ctx context.Context, cl *kgo.Client, only map[tp]bool) bool {
	stamp := CommitMetadataPrefix + time.Now().UTC().Format(time.RFC3339Nano)
	offsets := map[string]map[int32]kgo.EpochOffset{}
	meta := map[tp]string{}
	included := map[tp][]*pendingCut{}
	w.mu.Lock()
	for k, ps := range w.parts {
		if only != nil && !only[k] {
			continue
		}
		p := ps.commitPoint()
		base := stamp
		if rp := w.o.Replay; rp != nil {
			base += replayMeta(rp.From[k.partition], rp.Until[k.partition], rp.Archive) // the job's range stays in its commits
		}
		m, cuts, waiting := base, []*pendingCut(nil), false
		if w.b.recordCuts {
			var reserved int
			cuts, reserved, waiting = ps.cutsToRecord(p)
			var b []byte
			var n int
			b, n = appendCuts([]byte(base), p, plainCuts(cuts), reserved)
			m, cuts = string(b), cuts[:n]
		}
		if p > ps.committed || waiting {
			if offsets[k.topic] == nil {
				offsets[k.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[k.topic][k.partition] = kgo.EpochOffset{Epoch: ps.epoch, Offset: p}
			meta[k], included[k] = m, cuts
		}
	}
	w.mu.Unlock()
	if len(offsets) == 0 {
		return false
	}
	cctx := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				m := meta[tp{req.Topics[i].Topic, req.Topics[i].Partitions[j].Partition}]
				req.Topics[i].Partitions[j].Metadata = &m
			}
		}
		return nil
	})
	recorded := false
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
					w.log.Warn("commit of a partition failed; it will be retried with the next commit", "partition", p.Partition, "err", kerr.ErrorForCode(p.ErrorCode))
					continue
				}
				k := tp{t.Topic, p.Partition}
				if ps := w.parts[k]; ps != nil {
					ps.committed = max(ps.committed, offsets[t.Topic][p.Partition].Offset)
				}
				for _, c := range included[k] {
					recorded = recorded || !c.recorded
					c.recorded = true
				}
			}
		}
	})
	return recorded
}

// cutsToRecord drops the cuts the commit point p has passed and returns
// those left: the recorded first (a cut once recorded stays in every later
// commit until the commit point passes it), then the others by first
// offset; how many of them may use the reserve (the recorded and the
// oldest waiting); and whether any is not recorded yet.
func (ps *partState) cutsToRecord(p int64) (cuts []*pendingCut, reserved int, waiting bool) {
	ps.cuts = slices.DeleteFunc(ps.cuts, func(c *pendingCut) bool { return c.last < p })
	var rest []*pendingCut
	for _, c := range ps.cuts {
		if c.recorded {
			cuts = append(cuts, c)
		} else {
			rest = append(rest, c)
		}
	}
	slices.SortFunc(rest, func(a, b *pendingCut) int { return cmp.Compare(a.first, b.first) })
	reserved = len(cuts) + min(len(rest), 1)
	return append(cuts, rest...), reserved, len(rest) > 0
}

func plainCuts(pcs []*pendingCut) []cut {
	out := make([]cut, len(pcs))
	for i, c := range pcs {
		out[i] = c.cut
	}
	return out
}

func (w *Worker) assigned(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	var committed kadm.OffsetResponses
	if w.b.recordCuts {
		// The cuts the last owner recorded: its batches are cut again
		// the same way.
		var err error
		if committed, err = kadm.NewClient(cl).FetchOffsets(ctx, w.o.Connector.Group); err != nil {
			w.log.Warn("the committed cuts could not be read; batches are cut as they come", "err", err)
		}
	}
	w.mu.Lock()
	for t, ps := range m {
		for _, p := range ps {
			ps := newPartState()
			ps.ctx, ps.cancel = context.WithCancel(w.dctx)
			if o, ok := committed.Lookup(t, p); ok && o.Err == nil && o.At >= 0 {
				w.plan(ps, p, o.At, o.Metadata)
			}
			w.parts[tp{t, p}] = ps
		}
	}
	w.mu.Unlock()
	w.ready.Store(true)
	w.log.Info("partitions assigned", "partitions", m)
}

// plan sets a partition to cut the batches its last commit recorded.
func (w *Worker) plan(ps *partState, partition int32, at int64, meta string) {
	cuts, err := parseCuts(meta, at)
	if err != nil {
		w.log.Warn("the committed cuts are unreadable; batches are cut as they come", "partition", partition, "err", err)
		return
	}
	if len(cuts) == 0 {
		return
	}
	slices.SortFunc(cuts, func(a, b cut) int { return cmp.Compare(a.first, b.first) })
	ps.plan, ps.planBase = cuts, at
	for _, c := range cuts {
		ps.planEnd = max(ps.planEnd, c.last)
	}
	w.log.Info("cutting the recorded batches again", "partition", partition, "batches", len(cuts), "from", at, "to", ps.planEnd)
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
	w.flush()
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
