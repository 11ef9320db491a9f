package pullapi

// The window: the recent events of every partition, read once by one
// reader per API process, decoded once, and indexed by account. A request
// whose position falls inside it is answered from memory, without a fetch
// or a decompression of the other accounts' events; a long poll waits on
// its own account's notice. Older positions are read from Kafka (scan.go).

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/internal/dlq"
)

// DefaultWindowBytes bounds the events the window holds (their JSON, plus
// entryOverhead each), shared equally by the partitions: 256 MiB holds
// about 50 s of a 10,000 events/s stream of 450-byte events, so that a
// follower back from a minute away is still answered from memory.
const DefaultWindowBytes = 256 << 20

// entryOverhead is what one event costs the window beside its JSON: its
// entry, its place in the account's index and its meta strings.
const entryOverhead = 96

// followWait is how long the window's fetch waits at the broker for new
// events: a new event reaches a waiting follower within about this plus
// one fetch.
const followWait = 200 * time.Millisecond

type window struct {
	maxBytes int // all partitions'

	// Partition reads of requests, from the window and from Kafka.
	hits, misses atomic.Int64

	mu    sync.Mutex // guards parts' length
	parts []*partWindow

	waitMu  sync.Mutex
	waiters map[string]chan struct{} // by account, closed when it gets events

	// Backfills run on ctx, set while the server runs; fills counts
	// them so that Run waits for them.
	ctxMu sync.Mutex
	ctx   context.Context
	fills sync.WaitGroup
}

func (w *window) start(ctx context.Context) {
	w.ctxMu.Lock()
	defer w.ctxMu.Unlock()
	w.ctx = ctx
}

func (w *window) stop() {
	w.ctxMu.Lock()
	w.ctx = nil
	w.ctxMu.Unlock()
	w.fills.Wait()
}

// partWindow is one partition's events from start to end.
type partWindow struct {
	mu       sync.RWMutex
	ready    bool
	start    int64     // the first offset covered
	end      int64     // the next offset to read: [start, end) is covered
	head     int64     // the last stable offset the last fetch saw
	asOf     time.Time // when the fetch that saw head was sent
	base     int       // the number of entries evicted so far: entries[0]'s index
	entries  []item
	accounts map[string][]int // each account's entries, by index, in order
	bytes    int
	filling  atomic.Bool // a backfill is under way
}

func newWindow(maxBytes int) *window {
	if maxBytes <= 0 {
		maxBytes = DefaultWindowBytes
	}
	return &window{maxBytes: maxBytes, waiters: map[string]chan struct{}{}}
}

func (w *window) part(p int) *partWindow {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p < len(w.parts) {
		return w.parts[p]
	}
	return nil
}

// waiter returns a channel closed when the account next gets an event.
func (w *window) waiter(account string) <-chan struct{} {
	w.waitMu.Lock()
	defer w.waitMu.Unlock()
	ch, ok := w.waiters[account]
	if !ok {
		ch = make(chan struct{})
		w.waiters[account] = ch
	}
	return ch
}

// notify wakes the accounts' waiters.
func (w *window) notify(accounts map[string]bool) {
	w.waitMu.Lock()
	defer w.waitMu.Unlock()
	for a := range accounts {
		if ch, ok := w.waiters[a]; ok {
			close(ch)
			delete(w.waiters, a)
		}
	}
}

// fromWindow takes c's events from the partitions the window covers at c's
// offsets; covered[p] says which it did. All of them covered, c needs no
// read from Kafka. A partition whose offset is shortly before the window
// starts a backfill (see backfill) for the next requests.
func (s *Server) fromWindow(c *cursor, covered []bool) bool {
	w := s.win
	all := true
	for p := range c.next {
		covered[p] = false
		if c.held[p] {
			continue
		}
		pw := w.part(p)
		if pw == nil || !pw.take(c, p) {
			w.misses.Add(1)
			all = false
			if pw != nil {
				s.backfill(pw, int32(p), c.next[p])
			}
			continue
		}
		w.hits.Add(1)
		covered[p] = true
	}
	return all
}

// take adds partition p's events of c's account from c.next[p] on, and
// reports whether the window covered that offset.
func (pw *partWindow) take(c *cursor, p int) bool {
	pw.mu.RLock()
	defer pw.mu.RUnlock()
	from := c.next[p]
	if !pw.ready || from < pw.start || from > pw.end {
		return false
	}
	// The head counts only when the window's fetch that saw it was sent
	// after this request began: an event written before the request
	// must be on its page, or the page is not top. Otherwise the head is
	// unknown, and the request reads the window again after its next
	// fetch.
	c.head[p] = -1
	if !pw.asOf.Before(c.since) {
		c.head[p] = pw.head
	}
	idx := pw.accounts[c.account]
	i := sort.Search(len(idx), func(i int) bool { return pw.entries[idx[i]-pw.base].offset >= from })
	for ; i < len(idx); i++ {
		it := pw.entries[idx[i]-pw.base]
		if len(c.items) >= c.limit || len(c.items) > 0 && c.bytes+len(it.data) > MaxPageBytes {
			c.held[p] = true
			c.next[p] = it.offset
			return true
		}
		c.add(it)
	}
	c.next[p] = pw.end
	return true
}

// backfillOffsetBytes is what an offset is assumed to cost the window
// when it holds nothing to tell the average from.
const backfillOffsetBytes = 1024

// backfill reads partition p from offset from up to where its window
// starts, and puts what it read in front of the window, when the window
// has room for it: an API process that restarted (or a window still
// filling) then answers the followers that come back from just before its
// start from memory after the first of them. It runs in the background,
// one per partition at a time, among the Kafka reads' slots; a window
// without room (a full one, in steady state) is never backfilled.
func (s *Server) backfill(pw *partWindow, p int32, from int64) {
	w := s.win
	w.ctxMu.Lock()
	defer w.ctxMu.Unlock()
	if w.ctx == nil || w.ctx.Err() != nil {
		return
	}
	pw.mu.RLock()
	start, ready := pw.start, pw.ready
	per := backfillOffsetBytes
	if len(pw.entries) > 0 {
		per = pw.bytes / len(pw.entries)
	}
	room := w.share() - pw.bytes
	pw.mu.RUnlock()
	if !ready || from >= start || int64(per)*(start-from) > int64(room) || !pw.filling.CompareAndSwap(false, true) {
		return
	}
	ctx := w.ctx
	w.fills.Go(func() {
		defer pw.filling.Store(false)
		if err := s.fill(ctx, pw, p, from, start, room); err != nil && ctx.Err() == nil {
			s.failLog.Warn("pull API window could not read back", "topic", s.o.Topic, "partition", p, "err", err)
		}
	})
}

// fill reads [from, start) of partition p and puts it in front of the
// window, if the window still starts at start and has room.
func (s *Server) fill(ctx context.Context, pw *partWindow, p int32, from, start int64, room int) error {
	select {
	case s.reads <- struct{}{}:
		defer func() { <-s.reads }()
	case <-ctx.Done():
		return nil
	}
	var items []item
	size := 0
	for cur := from; cur < start; {
		m, err := s.metadata(ctx, false)
		if err != nil {
			return err
		}
		if int(p) >= len(m.leaders) {
			return nil
		}
		next := make([]int64, len(m.leaders))
		skip := make([]bool, len(m.leaders))
		for i := range skip {
			skip[i] = i != int(p)
		}
		next[p] = cur
		resps, firstErr, err := s.fetchLeaders(ctx, s.cl, s.fetchRequests(m, next, skip, 0), len(m.leaders))
		if err != nil {
			return err
		}
		rp := resps[p]
		if rp == nil {
			return cmpErr(firstErr, errors.New("no answer for the partition"))
		}
		if rp.ErrorCode != 0 {
			return kerr.ErrorForCode(rp.ErrorCode)
		}
		recs, after, _, err := s.records(ctx, p, cur, rp)
		if err != nil {
			return err
		}
		moved := false
		for _, rec := range recs {
			if rec.Offset >= start {
				break
			}
			cur, moved = rec.Offset+1, true
			if it, ok := s.windowItem(rec, p); ok {
				items = append(items, it)
				size += len(it.data) + entryOverhead
			}
		}
		if after > cur {
			cur, moved = min(after, start), true
		}
		if size > room {
			return nil // more than the estimate: the window has no room
		}
		if !moved {
			return nil // nothing readable yet (a transaction in flight)
		}
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if !pw.ready || pw.start != start || pw.bytes+size > s.win.share() {
		return nil // moved on meanwhile
	}
	pw.prepend(items, from, size)
	return nil
}

// prepend puts items, the events of [from, start), in front of the window.
func (pw *partWindow) prepend(items []item, from int64, size int) {
	base := pw.base - len(items)
	before := map[string][]int{}
	for i, it := range items {
		before[it.account] = append(before[it.account], base+i)
	}
	if pw.accounts == nil {
		pw.accounts = map[string][]int{}
	}
	for acc, idx := range before {
		pw.accounts[acc] = append(idx, pw.accounts[acc]...)
	}
	pw.entries = append(items, pw.entries...)
	pw.base, pw.start, pw.bytes = base, from, pw.bytes+size
}

// share is each partition's part of the window's bytes.
func (w *window) share() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxBytes / max(1, len(w.parts))
}

// add appends one event of the partition's read: its entry, and what it
// holds.
func (pw *partWindow) add(it item, max int) {
	if pw.accounts == nil {
		pw.accounts = map[string][]int{}
	}
	pw.accounts[it.account] = append(pw.accounts[it.account], pw.base+len(pw.entries))
	pw.entries = append(pw.entries, it)
	pw.bytes += len(it.data) + entryOverhead
	for pw.bytes > max && len(pw.entries) > 1 {
		pw.evictOldest()
	}
}

// evictOldest drops the window's oldest event.
func (pw *partWindow) evictOldest() {
	old := pw.entries[0]
	pw.entries[0] = item{}
	pw.entries = pw.entries[1:]
	pw.base++
	if rest := pw.accounts[old.account][1:]; len(rest) > 0 {
		pw.accounts[old.account] = rest
	} else {
		delete(pw.accounts, old.account)
	}
	pw.bytes -= len(old.data) + entryOverhead
	pw.start = old.offset + 1
}

// trim drops what the log no longer holds (retention, or records an
// operator deleted): the window never serves an event Kafka deleted, and a
// position before logStart gets position_expired from Kafka.
func (pw *partWindow) trim(logStart int64) {
	for len(pw.entries) > 0 && pw.entries[0].offset < logStart {
		pw.evictOldest()
	}
	pw.start = max(pw.start, min(logStart, pw.end))
}

// reset empties the partition's window and starts it at offset.
func (pw *partWindow) reset(offset int64) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.ready = true
	pw.start, pw.end, pw.head = offset, offset, offset
	pw.base += len(pw.entries)
	pw.entries, pw.accounts, pw.bytes = nil, nil, 0
}

// follow reads the head of every partition into the window until ctx
// ends, starting at the last stable offsets, and wakes the waiters of the
// accounts that got events (and every long poll, for the reads the window
// does not cover).
func (s *Server) follow(ctx context.Context) {
	w := s.win
	for ctx.Err() == nil {
		if err := s.followOnce(ctx); err != nil && ctx.Err() == nil {
			s.failLog.Warn("pull API window could not read the events topic", "topic", s.o.Topic, "err", err)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	// Nothing will wake them now.
	w.waitMu.Lock()
	for a, ch := range w.waiters {
		close(ch)
		delete(w.waiters, a)
	}
	w.waitMu.Unlock()
}

// followOnce makes one fetch at the window's ends and takes it in.
func (s *Server) followOnce(ctx context.Context) error {
	w := s.win
	m, err := s.metadata(ctx, false)
	if err != nil {
		return err
	}
	n := len(m.leaders)
	w.mu.Lock()
	for len(w.parts) < n {
		w.parts = append(w.parts, &partWindow{})
	}
	parts := slices.Clone(w.parts[:n])
	w.mu.Unlock()
	var unready []int32
	for p, pw := range parts {
		pw.mu.RLock()
		if !pw.ready {
			unready = append(unready, int32(p))
		}
		pw.mu.RUnlock()
	}
	if len(unready) > 0 {
		listed, err := s.adm.ListCommittedOffsets(ctx, s.o.Topic)
		if err != nil {
			return err
		}
		for _, p := range unready {
			o, ok := listed.Lookup(s.o.Topic, p)
			if !ok || o.Err != nil {
				return errors.Join(errors.New("list the last stable offsets"), o.Err)
			}
			parts[p].reset(o.Offset)
		}
	}
	next := make([]int64, n)
	for p, pw := range parts {
		pw.mu.RLock()
		next[p] = pw.end
		pw.mu.RUnlock()
	}
	share := w.maxBytes / n
	reqs := s.fetchRequests(m, next, nil, int32(followWait/time.Millisecond))
	sent := time.Now()
	resps, firstErr, err := s.fetchLeaders(ctx, s.followCl, reqs, n)
	if err != nil {
		return err
	}
	got := map[string]bool{}
	stale := false
	for p, rp := range resps {
		if rp == nil {
			continue
		}
		if err := s.extend(ctx, parts[p], int32(p), next[p], share, sent, rp, got); err != nil {
			if errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
				stale = true
			}
			firstErr = cmpErr(firstErr, err)
		}
	}
	if stale {
		_, _ = s.metadata(ctx, true)
	}
	if len(got) > 0 {
		w.notify(got)
		s.headMu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.headMu.Unlock()
	}
	return firstErr
}

// extend takes one partition's fetch answer, read from offset from, into
// its window, noting the accounts that got events.
func (s *Server) extend(ctx context.Context, pw *partWindow, p int32, from int64, share int, sent time.Time, rp *kmsg.FetchResponseTopicPartition, got map[string]bool) error {
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code {
		// Retention passed the window's end, or the topic was
		// recreated: start again at the head.
		pw.mu.Lock()
		pw.ready = false
		pw.mu.Unlock()
		return nil
	}
	recs, after, h, err := s.records(ctx, p, from, rp)
	if err != nil {
		return err // read again from the same offset
	}
	// Decoded before the lock: readers wait only for the appends.
	items := make([]item, 0, len(recs))
	for _, rec := range recs {
		if it, ok := s.windowItem(rec, p); ok {
			items = append(items, it)
		}
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.end != from {
		return nil // reset meanwhile
	}
	pw.trim(rp.LogStartOffset)
	for _, it := range items {
		pw.add(it, share)
		got[it.account] = true
	}
	if n := len(recs); n > 0 {
		pw.end = recs[n-1].Offset + 1
	}
	pw.end = max(pw.end, after)
	pw.head = max(h, pw.end)
	pw.asOf = sent
	pw.ready = true
	return nil
}

// windowItem decodes one record for the window; false for a record
// redriven for one connector (not a new event) or one it cannot read
// (logged).
func (s *Server) windowItem(rec *kgo.Record, p int32) (item, bool) {
	if len(rec.Headers) > 0 && dlq.Has(rec, dlq.HeaderConnector) {
		return item{}, false
	}
	it, err := s.decode(rec.Value)
	if err == nil && !s.readMeta(&it) {
		err = errors.New("not JSON")
	}
	if err != nil {
		s.failLog.Warn("pull API skipped an unreadable record", "topic", s.o.Topic, "partition", p, "offset", rec.Offset, "err", err)
		return item{}, false
	}
	if s.codec == nil {
		it.data = slices.Clone(it.data) // not the fetch's buffer, which holds other accounts' events
	}
	it.partition, it.offset = p, rec.Offset
	return it, true
}

// headProbe shares the topic's last stable offsets between requests that
// must know the head as of their start: one ListOffsets answers every
// request that began before it was sent.
type headProbe struct {
	mu       sync.Mutex
	sent     time.Time
	heads    []int64       // by partition; nil before the first probe
	inflight chan struct{} // closed when the probe under way ends
}

// freshHeads returns the last stable offsets as of a ListOffsets sent at
// or after since.
func (s *Server) freshHeads(ctx context.Context, since time.Time) ([]int64, error) {
	h := &s.probe
	for {
		h.mu.Lock()
		if h.heads != nil && !h.sent.Before(since) {
			heads := h.heads
			h.mu.Unlock()
			return heads, nil
		}
		if ch := h.inflight; ch != nil {
			h.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		h.inflight = ch
		h.mu.Unlock()
		sent := time.Now()
		// Not the request's context: the others waiting on it must not
		// lose it to this one's deadline.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		listed, err := s.adm.ListCommittedOffsets(lctx, s.o.Topic)
		cancel()
		var heads []int64
		if err == nil {
			for p := int32(0); ; p++ {
				o, ok := listed.Lookup(s.o.Topic, p)
				if !ok {
					break
				}
				if o.Err != nil {
					err = o.Err
					break
				}
				heads = append(heads, o.Offset)
			}
		}
		h.mu.Lock()
		h.inflight = nil
		if err == nil {
			h.sent, h.heads = sent, heads
		}
		h.mu.Unlock()
		close(ch)
		if err != nil {
			return nil, err
		}
	}
}

// confirmHeads settles the heads the window could not vouch for (see
// take) with a probe sent after the request began.
func (s *Server) confirmHeads(ctx context.Context, c *cursor) {
	stale := false
	for p := range c.next {
		if c.covered[p] && c.head[p] < 0 {
			stale = true
		}
	}
	if !stale {
		return
	}
	heads, err := s.freshHeads(ctx, c.since)
	if err != nil {
		return // unknown: the page is not top
	}
	for p := range c.next {
		if c.covered[p] && c.head[p] < 0 && p < len(heads) {
			c.head[p] = heads[p]
		}
	}
}

// Stats are the window's figures.
type Stats struct {
	// WindowReads and KafkaReads count the partitions requests read,
	// from the window and from Kafka (positions before the window).
	WindowReads, KafkaReads int64
	// WindowEvents and WindowBytes are what the window holds now.
	WindowEvents, WindowBytes int64
	// Partitions is how many partitions the window follows.
	Partitions int
}

// Stats returns the window's figures.
func (s *Server) Stats() Stats {
	w := s.win
	st := Stats{WindowReads: w.hits.Load(), KafkaReads: w.misses.Load()}
	w.mu.Lock()
	parts := slices.Clone(w.parts)
	w.mu.Unlock()
	for _, pw := range parts {
		pw.mu.RLock()
		if pw.ready {
			st.Partitions++
		}
		st.WindowEvents += int64(len(pw.entries))
		st.WindowBytes += int64(pw.bytes)
		pw.mu.RUnlock()
	}
	return st
}
