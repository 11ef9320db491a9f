package pullapi

// Reading the events topic for one request: fetch from each leader, take
// the account's events, and stop at the limit, the page size, the head or
// the budget.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// item is one event of a page.
type item struct {
	data       []byte // the event's JSON
	eventType  string
	resourceID string
	sequence   int64
	partition  int32
	offset     int64
	hasSeq     bool
}

// scan reads from offsets until it has limit events of account, reaches the
// head, or runs out of budget; at the head with nothing found it waits for
// new events until the budget ends.
func (s *Server) scan(ctx context.Context, soft time.Time, account string, offsets []int64, limit int) ([]byte, error) {
	n := len(offsets)
	next := append([]int64(nil), offsets...)
	head := make([]int64, n) // last stable offset seen per partition; -1 unknown
	for i := range head {
		head[i] = -1
	}
	held := make([]bool, n) // the partition's next event is this account's, beyond the limit
	var items []item
	for {
		changed := s.changedCh()
		before := append([]int64(nil), next...)
		err := s.fetch(ctx, account, next, head, held, limit, &items)
		if errors.Is(err, errExpired) {
			return nil, errExpired
		}
		if err != nil {
			if ctx.Err() != nil {
				break // out of budget: answer with what was found
			}
			if len(items) == 0 && !advanced(offsets, next) {
				return nil, err
			}
			break
		}
		if len(items) >= limit || !slices.Contains(held, false) {
			break // full, by count or by bytes
		}
		if atHead(next, head) {
			if len(items) > 0 {
				break
			}
			// Woken by the head watcher, or every recheck in case it
			// is still starting or lost a notice.
			wait := time.NewTimer(min(time.Until(soft), recheck))
			select {
			case <-changed:
				wait.Stop()
				continue
			case <-wait.C:
				if time.Now().Before(soft) {
					continue
				}
			case <-ctx.Done():
			}
			break
		}
		if !advanced(before, next) {
			// Not at the head yet nothing readable: a transaction in
			// flight or a leader moving. Do not spin.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil || !time.Now().Before(soft) {
			break
		}
	}
	top := atHead(next, head)
	for _, h := range held {
		top = top && !h
	}
	return s.page(account, items, next, top), nil
}

func advanced(from, to []int64) bool {
	for i := range from {
		if to[i] != from[i] {
			return true
		}
	}
	return false
}

func atHead(next, head []int64) bool {
	for i := range next {
		if head[i] < 0 || next[i] < head[i] {
			return false
		}
	}
	return true
}

// fetch issues one fetch per leader for the partitions not held, and takes
// what comes back into items, advancing next.
func (s *Server) fetch(ctx context.Context, account string, next, head []int64, held []bool, limit int, items *[]item) error {
	m, err := s.metadata(ctx, false)
	if err != nil {
		return err
	}
	if len(m.leaders) != len(next) {
		// Partitions were added under us; the next request sees them.
		m = &topicMeta{id: m.id, leaders: m.leaders[:min(len(m.leaders), len(next))]}
	}
	byLeader := map[int32]*kmsg.FetchRequest{}
	for p, leader := range m.leaders {
		if held[p] {
			continue
		}
		req := byLeader[leader]
		if req == nil {
			req = kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.MaxWaitMillis = 0
			req.MinBytes = 1
			req.MaxBytes = 1 << 20
			req.IsolationLevel = 1
			req.SessionEpoch = -1
			t := kmsg.NewFetchRequestTopic()
			t.Topic, t.TopicID = s.o.Topic, m.id
			req.Topics = append(req.Topics, t)
			byLeader[leader] = req
		}
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition = int32(p)
		fp.FetchOffset = next[p]
		fp.PartitionMaxBytes = 256 << 10
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, fp)
	}
	type result struct {
		resp *kmsg.FetchResponse
		err  error
	}
	// The broker requests run on a context of their own, bounded by
	// fetchTimeout: a request's deadline firing while franz-go reads a
	// response closes the broker connection, and every other request on
	// it fails (503). This request stops waiting at its own deadline;
	// the fetch finishes on its goroutine, into the buffered channel.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	results := make(chan result, len(byLeader))
	var pending sync.WaitGroup
	for leader, req := range byLeader {
		pending.Go(func() {
			resp, err := s.cl.Broker(int(leader)).Request(rctx, req)
			r, _ := resp.(*kmsg.FetchResponse)
			results <- result{r, err}
		})
	}
	go func() { pending.Wait(); rcancel() }()
	// Take the responses in a fixed order of partitions so a page is
	// deterministic for a given position.
	var resps []*kmsg.FetchResponse
	var firstErr error
	for range byLeader {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err == nil && r.resp != nil && r.resp.ErrorCode != 0 {
			r.err = kerr.ErrorForCode(r.resp.ErrorCode)
		}
		if r.err != nil {
			firstErr = cmpErr(firstErr, r.err)
			continue
		}
		resps = append(resps, r.resp)
	}
	parts := make([]*kmsg.FetchResponseTopicPartition, len(next))
	for _, r := range resps {
		for ti := range r.Topics {
			for pi := range r.Topics[ti].Partitions {
				rp := &r.Topics[ti].Partitions[pi]
				if int(rp.Partition) < len(parts) {
					parts[rp.Partition] = rp
				}
			}
		}
	}
	stale := false
	for p, rp := range parts {
		if rp == nil {
			continue
		}
		if ctx.Err() != nil {
			// Out of time: the partitions not taken keep their offsets.
			break
		}
		if err := s.take(ctx, account, int32(p), rp, next, head, held, limit, items); err != nil {
			if errors.Is(err, errExpired) {
				return err
			}
			if errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
				stale = true
			}
			firstErr = cmpErr(firstErr, err)
		}
	}
	if stale {
		_, _ = s.metadata(ctx, true)
	}
	return firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// take processes one partition of a fetch response.
func (s *Server) take(ctx context.Context, account string, p int32, rp *kmsg.FetchResponseTopicPartition, next, head []int64, held []bool, limit int, items *[]item) error {
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code {
		return errExpired
	}
	fp, after := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         next[p],
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          s.o.Topic,
		Partition:      p,
	}, rp, s.decomp, nil)
	if fp.Err != nil && len(fp.Records) == 0 {
		return fp.Err
	}
	h := rp.LastStableOffset
	if h < 0 {
		h = rp.HighWatermark
	}
	head[p] = h
	if s.codec != nil {
		// Schemas the registry has to tell first. Out of time, the
		// partition keeps its offset and the page goes without it.
		err := schemas.Resolve(ctx, s.codec, func(yield func([]byte) bool) {
			for _, rec := range fp.Records {
				if !yield(rec.Value) {
					return
				}
			}
		})
		if err != nil {
			return nil
		}
	}
	for _, rec := range fp.Records {
		if len(rec.Headers) > 0 && dlq.Has(rec, dlq.HeaderConnector) {
			next[p] = rec.Offset + 1 // redriven for one connector, not a new event
			continue
		}
		it, acc, err := s.decode(rec.Value)
		if err != nil {
			s.o.Log.Warn("pull API skipped an unreadable record", "topic", s.o.Topic, "partition", p, "offset", rec.Offset, "err", err)
			next[p] = rec.Offset + 1
			continue
		}
		if acc != account {
			next[p] = rec.Offset + 1
			continue
		}
		if len(*items) >= limit || len(*items) > 0 && pageBytes(*items)+len(it.data) > MaxPageBytes {
			held[p] = true
			return nil
		}
		it.partition, it.offset = p, rec.Offset
		*items = append(*items, it)
		next[p] = rec.Offset + 1
	}
	// Past control records and aborted transactions too.
	next[p] = max(next[p], after)
	return nil
}

// pageBytes is the size of the events gathered for a page.
func pageBytes(items []item) int {
	n := 0
	for _, it := range items {
		n += len(it.data)
	}
	return n
}

// decode reads the account and the item of one record. JSON is read in
// place: the account is found without parsing the rest, so another
// account's events cost little to skip.
func (s *Server) decode(v []byte) (item, string, error) {
	if s.codec != nil {
		e, err := s.codec.Decode(v)
		if err != nil {
			return item{}, "", err
		}
		return item{data: schemas.AppendJSON(nil, e, nil), eventType: e.EventType, resourceID: e.ResourceID, sequence: e.Sequence, hasSeq: true}, e.AccountID, nil
	}
	acc := gjson.GetBytes(v, "account_id")
	if acc.Type != gjson.String {
		return item{}, "", errors.New("no account_id")
	}
	return item{data: v}, acc.Str, nil
}

// metaString is the text of a top-level field for an item's meta: a
// string's value, nothing for null or no field, else the value's JSON.
func metaString(v []byte) string {
	switch {
	case len(v) == 0 || v[0] == 'n':
		return ""
	case v[0] == '"':
		return schemas.StringValue(v)
	}
	return string(v)
}

// metaInt is the value of a top-level number field, and whether it is
// one; a fraction or exponent is cut to an integer.
func metaInt(v []byte) (int64, bool) {
	if len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, true
	}
	f, _ := strconv.ParseFloat(string(v), 64)
	return int64(f), true
}
