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
	account    string
	eventType  string
	resourceID string
	sequence   int64
	partition  int32
	offset     int64
	hasSeq     bool
}

// cursor is where one request's scan stands.
type cursor struct {
	account string
	limit   int
	next    []int64   // per partition, the next offset to read
	head    []int64   // per partition, the last stable offset seen; -1 unknown
	held    []bool    // the partition's next event is the account's, beyond the page
	items   []item    // the account's events found, in order
	bytes   int       // their JSON
	covered []bool    // the partitions the window answered for, this round
	since   time.Time // when the request began reading
}

// add puts an event on the page.
func (c *cursor) add(it item) {
	c.items = append(c.items, it)
	c.bytes += len(it.data)
}

func newCursor(account string, offsets []int64, limit int) *cursor {
	c := &cursor{account: account, limit: limit, next: slices.Clone(offsets), head: make([]int64, len(offsets)),
		held: make([]bool, len(offsets)), covered: make([]bool, len(offsets)), since: time.Now()}
	for i := range c.head {
		c.head[i] = -1
	}
	return c
}

// full reports whether the page is full, by count or by bytes.
func (c *cursor) full() bool { return len(c.items) >= c.limit || !slices.Contains(c.held, false) }

// atHead reports whether every partition has been read to its head.
func (c *cursor) atHead() bool {
	for i := range c.next {
		if c.head[i] < 0 || c.next[i] < c.head[i] {
			return false
		}
	}
	return true
}

// top reports whether the page reaches the head: nothing of the account
// is left unread.
func (c *cursor) top() bool { return c.atHead() && !slices.Contains(c.held, true) }

// scan reads from offsets until it has limit events of account, reaches the
// head, or runs out of budget; at the head with nothing found it waits for
// new events until the budget ends.
func (s *Server) scan(ctx context.Context, soft time.Time, account string, offsets []int64, limit int) ([]byte, error) {
	c := newCursor(account, offsets, limit)
	for {
		changed := s.changedCh()
		mine := s.win.waiter(account)
		before := slices.Clone(c.next)
		var err error
		all := s.fromWindow(c, c.covered)
		if !all && !c.full() {
			err = s.fetch(ctx, c)
		}
		if err == nil && !slices.Contains(c.held, true) {
			// A full page may still end at the head: top then.
			s.confirmHeads(ctx, c)
		}
		if errors.Is(err, errExpired) {
			return nil, errExpired
		}
		if err != nil {
			if ctx.Err() != nil {
				break // out of budget: answer with what was found
			}
			if len(c.items) == 0 && slices.Equal(offsets, c.next) {
				return nil, err
			}
			break
		}
		if c.full() {
			break
		}
		if c.atHead() {
			if all {
				// Every partition from the window: its own
				// account's notice wakes this poll.
				changed = mine
			}
			if len(c.items) > 0 || !s.waitForChange(ctx, changed, soft) {
				break
			}
			continue
		}
		if slices.Equal(before, c.next) {
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
	return s.page(account, c.items, c.next, c.top()), nil
}

// waitForChange waits at the head for new events: woken by the head
// watcher, or every recheck in case it is still starting or lost a
// notice. It reports whether to read again (false: the budget is over).
func (s *Server) waitForChange(ctx context.Context, changed <-chan struct{}, soft time.Time) bool {
	wait := time.NewTimer(min(time.Until(soft), recheck))
	defer wait.Stop()
	select {
	case <-changed:
		return true
	case <-wait.C:
		return time.Now().Before(soft)
	case <-ctx.Done():
		return false
	}
}

// fetch issues one fetch per leader for the partitions not held, and takes
// what comes back into the cursor.
func (s *Server) fetch(ctx context.Context, c *cursor) error {
	select {
	case s.reads <- struct{}{}:
		defer func() { <-s.reads }()
	case <-ctx.Done():
		return ctx.Err()
	}
	m, err := s.metadata(ctx, false)
	if err != nil {
		return err
	}
	if len(m.leaders) != len(c.next) {
		// Partitions were added under us; the next request sees them.
		m = &topicMeta{id: m.id, leaders: m.leaders[:min(len(m.leaders), len(c.next))]}
	}
	skip := make([]bool, len(c.next))
	for p := range skip {
		skip[p] = c.held[p] || c.covered[p]
	}
	parts, firstErr, err := s.fetchLeaders(ctx, s.cl, s.fetchRequests(m, c.next, skip, 0), len(c.next))
	if err != nil {
		return err
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
		if err := s.take(ctx, c, int32(p), rp); err != nil {
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

// fetchRequests builds one fetch request per leader, for the partitions
// not skipped, from offsets next; maxWait is how long a broker may wait
// for new events.
func (s *Server) fetchRequests(m *topicMeta, next []int64, skip []bool, maxWait int32) map[int32]*kmsg.FetchRequest {
	byLeader := map[int32]*kmsg.FetchRequest{}
	for p, leader := range m.leaders {
		if p < len(skip) && skip[p] {
			continue
		}
		req := byLeader[leader]
		if req == nil {
			req = kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.MaxWaitMillis = maxWait
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
	return byLeader
}

// fetchLeaders sends the requests and returns the answers by partition
// (of n), with the first error of a leader's answer; err is the request's
// context ending.
func (s *Server) fetchLeaders(ctx context.Context, cl *kgo.Client, byLeader map[int32]*kmsg.FetchRequest, n int) (parts []*kmsg.FetchResponseTopicPartition, firstErr, err error) {
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
			resp, err := cl.Broker(int(leader)).Request(rctx, req)
			r, _ := resp.(*kmsg.FetchResponse)
			results <- result{r, err}
		})
	}
	go func() { pending.Wait(); rcancel() }()
	// The answers are placed by partition, so a page is deterministic
	// for a given position.
	parts = make([]*kmsg.FetchResponseTopicPartition, n)
	for range byLeader {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		if r.err == nil && r.resp != nil && r.resp.ErrorCode != 0 {
			r.err = kerr.ErrorForCode(r.resp.ErrorCode)
		}
		if r.err != nil {
			firstErr = cmpErr(firstErr, r.err)
			continue
		}
		for ti := range r.resp.Topics {
			for pi := range r.resp.Topics[ti].Partitions {
				rp := &r.resp.Topics[ti].Partitions[pi]
				if int(rp.Partition) < n {
					parts[rp.Partition] = rp
				}
			}
		}
	}
	return parts, firstErr, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// take processes one partition of a fetch response into c.
func (s *Server) take(ctx context.Context, c *cursor, p int32, rp *kmsg.FetchResponseTopicPartition) error {
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code {
		return errExpired
	}
	recs, after, head, err := s.records(ctx, p, c.next[p], rp)
	if errors.Is(err, errUnresolved) {
		// Out of time for the registry: the partition keeps its
		// offset and the page goes without it.
		c.head[p] = head
		return nil
	}
	if err != nil {
		return err
	}
	c.head[p] = head
	for _, rec := range recs {
		if len(rec.Headers) > 0 && dlq.Has(rec, dlq.HeaderConnector) {
			c.next[p] = rec.Offset + 1 // redriven for one connector, not a new event
			continue
		}
		it, err := s.decode(rec.Value)
		if err == nil && it.account != c.account {
			c.next[p] = rec.Offset + 1 // another account's: not parsed further
			continue
		}
		if err == nil && !s.readMeta(&it) {
			err = errors.New("not JSON")
		}
		if err != nil {
			s.o.Log.Warn("pull API skipped an unreadable record", "topic", s.o.Topic, "partition", p, "offset", rec.Offset, "err", err)
			c.next[p] = rec.Offset + 1
			continue
		}
		if len(c.items) >= c.limit || len(c.items) > 0 && c.bytes+len(it.data) > MaxPageBytes {
			c.held[p] = true
			return nil
		}
		it.partition, it.offset = p, rec.Offset
		c.add(it)
		c.next[p] = rec.Offset + 1
	}
	// Past control records and aborted transactions too.
	c.next[p] = max(c.next[p], after)
	return nil
}

// errUnresolved is a partition's records whose schemas the registry did
// not tell in time.
var errUnresolved = errors.New("schemas not resolved")

// records reads partition p's fetch answer from offset from: its
// committed records, the offset after them (past control records and
// aborted transactions), and the partition's head (its last stable
// offset). With a registry codec it first resolves the records' schemas
// (errUnresolved: not in time). An error of the answer with no records is
// returned as it is.
func (s *Server) records(ctx context.Context, p int32, from int64, rp *kmsg.FetchResponseTopicPartition) (recs []*kgo.Record, after, head int64, err error) {
	fp, after := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         from,
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          s.o.Topic,
		Partition:      p,
	}, rp, s.decomp, nil)
	if fp.Err != nil && len(fp.Records) == 0 {
		return nil, 0, 0, fp.Err
	}
	head = rp.LastStableOffset
	if head < 0 {
		head = rp.HighWatermark
	}
	if s.codec != nil {
		err := schemas.Resolve(ctx, s.codec, func(yield func([]byte) bool) {
			for _, rec := range fp.Records {
				if !yield(rec.Value) {
					return
				}
			}
		})
		if err != nil {
			return nil, after, head, errUnresolved
		}
	}
	return fp.Records, after, head, nil
}

// decode reads the account and the item of one record. JSON is read in
// place: the account is found without parsing the rest, so another
// account's events cost little to skip.
func (s *Server) decode(v []byte) (item, error) {
	if s.codec != nil {
		e, err := s.codec.Decode(v)
		if err != nil {
			return item{}, err
		}
		return item{data: schemas.AppendJSON(nil, e, nil), account: e.AccountID, eventType: e.EventType, resourceID: e.ResourceID, sequence: e.Sequence, hasSeq: true}, nil
	}
	acc := gjson.GetBytes(v, "account_id")
	if acc.Type != gjson.String {
		return item{}, errors.New("no account_id")
	}
	return item{data: v, account: acc.Str}, nil
}

// readMeta reads the fields of a JSON event's meta: events are written by the
// processor, valid, but anyone can write to the topic, so one iterative
// pass checks the grammar and the depth and reads the fields the meta
// needs (the first of each, as a path lookup would). It reports false for
// a value that is not JSON.
func (s *Server) readMeta(it *item) bool {
	if s.codec != nil {
		return true
	}
	var eventType, resourceID, sequence []byte
	ok := schemas.TopMembers(it.data, func(key string, v []byte) {
		switch {
		case key == "event_type" && eventType == nil:
			eventType = v
		case key == "resource_id" && resourceID == nil:
			resourceID = v
		case key == "sequence" && sequence == nil:
			sequence = v
		}
	})
	if !ok {
		return false
	}
	it.eventType, it.resourceID = metaString(eventType), metaString(resourceID) // it.data holds them
	it.sequence, it.hasSeq = metaInt(sequence)
	return true
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
