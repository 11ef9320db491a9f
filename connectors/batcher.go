package connectors

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/chunks"
	"github.com/firehose/firehose/schemas"
)

// LanesPerPartition is how many lanes a partition's events are split into,
// by key, for destinations that keep order: each lane has at most one
// batch in flight, so one resource's batches arrive in order while a
// partition still has up to this many batches in flight.
const LanesPerPartition = 8

// batcher cuts a connector's records into batches: per partition, per
// rendered path, and for a destination that keeps order per lane. A batch
// is sealed at its count or byte bound or its age, and the largest open
// ones are sealed when open batches hold more than the cap. It does no
// I/O and takes no lock: the worker's mu guards it and the partitions.
type batcher struct {
	name           string
	bounds         Bounds
	limit          int64 // max_buffered_bytes; 0: none
	ordered        bool
	splice         bool      // JSON bodies may be spliced from record values
	tmpl           *Template // path template, or nil
	processingTime bool      // render paths from the processing time
	ext            string    // object name extension
	// recordCuts: batches are objects, each delivered only once a commit
	// recorded its cut (see cuts.go).
	recordCuts bool
	// pack: open batches pack their records past PackBytes (see pack.go);
	// decode decodes a packed event again.
	pack   bool
	packAt int    // PackBytes; smaller in tests
	replay string // the replay job's id, for a job's worker
	decode func([]byte) (*schemas.Event, error)

	buffered  int64 // bytes of open batches
	pending   int64 // bytes of sealed batches not yet delivered
	avgRecord int64 // running average of a record's bytes
}

type tp struct {
	topic     string
	partition int32
}

// partState is one partition's batches and offsets.
type partState struct {
	next   int64 // offset after the last record consumed
	epoch  int32
	open   map[string]*openBatch // by rendered path and lane
	sealed []*Batch              // not yet delivered (queued or in flight), in offset order
	// committed is the last offset committed for this partition, -1
	// when none has been by this worker.
	committed int64
	// active counts the partition's deliveries in flight; ctx is theirs,
	// cancelled when the partition is given up.
	active  int
	ctx     context.Context
	cancel  func()
	revoked bool // no more deliveries start
	gone    bool // given up: its bytes no longer count

	// cuts are the partition's sealed batches, until the commit point
	// passes them, for the commits to record (recordCuts). plan holds the
	// cuts the last commit recorded, read at assignment, which batches
	// follow until the partition is read past planEnd; planBase is that
	// commit's offset.
	cuts     []*pendingCut
	plan     []cut
	planBase int64
	planEnd  int64

	// arena and recs hold copies of the partition's records (see own).
	arena chunks.Bytes
	recs  chunks.RecordSlab
}

// own copies a fetched record, with its key, value and headers, into the
// partition's own memory, and returns the copy. The client decompresses a
// whole record batch into one buffer, of up to the producer's batch size
// (megabytes), and a record slice per batch: a batch of ours holding one
// record of it would keep all of it alive, and open and undelivered
// batches span many. The copies are chunked by arrival, which is close to
// how batches are delivered, so a chunk is freed soon after its batches.
func (ps *partState) own(r *kgo.Record) *kgo.Record {
	c := ps.recs.New()
	*c = kgo.Record{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, LeaderEpoch: r.LeaderEpoch,
		Timestamp: r.Timestamp, Attrs: r.Attrs, ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch,
		Key: ps.arena.Copy(r.Key), Value: ps.arena.Copy(r.Value),
	}
	if len(r.Headers) > 0 {
		c.Headers = make([]kgo.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			c.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: ps.arena.Copy(h.Value)}
		}
	}
	return c
}

type openBatch struct {
	path    string
	planned *cut // the recorded cut this batch repeats, sealed at its last offset
	lane    int
	// topic, partition, first and last name the batch's records; idHash
	// is their offsets' hash (BatchID); count how many there are.
	topic       string
	partition   int32
	first, last int64
	idHash      uint64
	count       int
	// packs hold the first records, compressed (see pack.go), packed of
	// them in packBytes; records, events and shaped hold the rest, tail
	// of the bytes.
	packs     []pack
	packed    int
	packBytes int
	records   []*kgo.Record
	events    []*schemas.Event
	shaped    [][]byte // each event's transformed JSON, with transforms
	tail      int
	times     []time.Time
	bytes     int // of the events, as they came: what max_bytes bounds
	opened    time.Time
}

// recordBytes is what a record kept in a batch holds besides its value
// and key: its kgo.Record, the pointers to it and to its event, and its
// time.
const recordBytes = 200

// held is what the batch holds: its packs, the times of their events, and
// the records not packed.
func (b *openBatch) held() int { return b.packBytes + b.tail }

// packTail packs the records not packed yet.
func (bt *batcher) packTail(b *openBatch) {
	p := packRecords(b.records, b.events, b.shaped)
	b.packs = append(b.packs, p)
	b.packed += p.n
	was := b.held()
	b.packBytes += len(p.data) + p.n*timeBytes
	b.tail = 0
	bt.buffered += int64(b.held() - was)
	for i, r := range b.records {
		release(r)
		b.records[i] = nil
	}
	clear(b.events)
	b.records, b.events = b.records[:0], b.events[:0]
	if b.shaped != nil {
		clear(b.shaped)
		b.shaped = b.shaped[:0]
	}
}

func newPartState() *partState {
	return &partState{next: -1, committed: -1, open: map[string]*openBatch{}}
}

// add puts a record and its event into its open batch, and seals the
// batch when it reaches a bound.
func (bt *batcher) add(ps *partState, r *kgo.Record, e *schemas.Event, shaped []byte, now time.Time) {
	path := ""
	if bt.tmpl != nil {
		ts := e.Timestamp
		if bt.processingTime {
			ts = now
		}
		path = string(bt.tmpl.Render(nil, r.Topic, r.Partition, ts, e))
	}
	lane, key := 0, path
	if bt.ordered {
		lane = Lane(r.Key)
		key = path + "\x00" + strconv.Itoa(lane)
	}
	var plan *cut
	if len(ps.plan) > 0 {
		if r.Offset > ps.planEnd {
			ps.plan = nil
			for key, ob := range ps.open {
				if ob.planned != nil {
					bt.seal(ps, key) // its last record did not come back (a filter changed)
				}
			}
			sortSealed(ps)
		} else if c, ok := planned(ps.plan, pathHash(path), r.Offset); ok {
			if c.first < ps.planBase {
				release(r) // delivered before the commit: in its object already
				return
			}
			plan, key = &c, "\x01"+strconv.FormatInt(c.first, 10)
		}
	}
	b := ps.open[key]
	if b == nil {
		b = &openBatch{path: path, lane: lane, opened: now, planned: plan,
			topic: r.Topic, partition: r.Partition, first: r.Offset, idHash: fnvOffset64}
		ps.open[key] = b
	}
	b.last, b.count = r.Offset, b.count+1
	b.idHash = hashOffset(b.idHash, r.Offset)
	b.records = append(b.records, r)
	b.times = append(b.times, e.Timestamp)
	if shaped != nil {
		b.shaped = append(b.shaped, shaped)
		if bt.splice {
			e = nil // written from its shape
		}
	} else if e.Extra.Get(MetadataKey) != nil {
		// A delivered event sent round again: its old metadata is
		// replaced, not repeated, so it is encoded from the event.
		e.Extra.Delete(MetadataKey)
	} else if bt.splice && spliceable(r.Value) {
		e = nil // encoded from r.Value: the decoded event need not be kept
	}
	b.events = append(b.events, e)
	n := len(r.Value) + 96 // firehose_metadata and a newline
	if shaped != nil {
		n = len(shaped) + 96
	}
	bt.avgRecord = (bt.avgRecord*15 + int64(n)) / 16
	b.bytes += n
	// What the record holds until packed: its copy and its event.
	held := n + len(r.Key) + recordBytes
	b.tail += held
	bt.buffered += int64(held)
	if b.planned != nil {
		if r.Offset >= b.planned.last {
			bt.seal(ps, key)
			return
		}
	} else if b.count >= bt.bounds.MaxEvents || int64(b.bytes) >= int64(bt.bounds.MaxBytes) {
		bt.seal(ps, key)
		return
	}
	if bt.pack && b.tail >= bt.packAt {
		bt.packTail(b)
	}
}

// seal closes an open batch and queues it for delivery.
func (bt *batcher) seal(ps *partState, key string) {
	b := ps.open[key]
	delete(ps.open, key)
	if len(b.packs) > 0 && len(b.records) > 0 {
		bt.packTail(b) // a sealed batch may wait: it waits compressed
	}
	bt.buffered -= int64(b.held())
	bt.pending += int64(b.held())
	var pc *pendingCut
	if bt.recordCuts {
		pc = &pendingCut{cut: cut{path: pathHash(b.path), first: b.first, last: b.last}}
		ps.cuts = append(ps.cuts, pc)
	}
	ps.sealed = append(ps.sealed, &Batch{
		cut:         pc,
		lane:        b.lane,
		size:        b.held(),
		raw:         b.bytes,
		packs:       b.packs,
		packed:      b.packed,
		decode:      bt.decode,
		ID:          batchID(bt.name, b.topic, b.partition, b.first, b.last, b.idHash),
		Connector:   bt.name,
		Replay:      bt.replay,
		Topic:       b.topic,
		Partition:   b.partition,
		FirstOffset: b.first,
		LastOffset:  b.last,
		Key:         b.path + ObjectName(b.topic, b.partition, b.first, bt.ext),
		Records:     b.records,
		Events:      b.events,
		Shaped:      b.shaped,
		Times:       b.times,
	})
}

// sealAged seals the partition's batches that reached max_age.
func (bt *batcher) sealAged(ps *partState, now time.Time) {
	for key, b := range ps.open {
		// A batch repeating a recorded cut waits for its last record,
		// unless that was read and did not come to it.
		if now.Sub(b.opened) >= bt.bounds.MaxAge && (b.planned == nil || ps.next > b.planned.last) {
			bt.seal(ps, key)
		}
	}
	sortSealed(ps)
}

// sealAll seals every open batch of the partition (a stop).
func (bt *batcher) sealAll(ps *partState) {
	for key := range ps.open {
		bt.seal(ps, key)
	}
	sortSealed(ps)
}

// sortSealed puts the queue in offset order: sealing by map order can put
// a later batch first; delivery and commits go by offset.
func sortSealed(ps *partState) {
	slices.SortFunc(ps.sealed, func(a, b *Batch) int { return int(a.FirstOffset - b.FirstOffset) })
}

// sealOverCap brings the open batches under the cap when they hold more
// than it, down to half of it, so memory stays bounded however many
// paths, lanes and partitions a connector has open: an object store's
// batches first pack their records, largest first (see pack.go); then the
// largest batches are sealed.
func (bt *batcher) sealOverCap(parts map[tp]*partState) {
	if bt.limit <= 0 || bt.buffered <= bt.limit {
		return
	}
	if bt.pack {
		// Packing first: a batch packed keeps growing towards the
		// object asked for.
		for bt.buffered > bt.limit/2 {
			var big *openBatch
			for _, ps := range parts {
				for _, b := range ps.open {
					if b.tail >= minPack && (big == nil || b.tail > big.tail) {
						big = b
					}
				}
			}
			if big == nil {
				break
			}
			bt.packTail(big)
		}
		if bt.buffered <= bt.limit {
			return
		}
	}
	for bt.buffered > bt.limit/2 {
		var bigPS *partState
		var bigKey string
		big := -1
		for _, ps := range parts {
			for key, b := range ps.open {
				if b.held() > big {
					bigPS, bigKey, big = ps, key, b.held()
				}
			}
		}
		if bigPS == nil {
			return
		}
		bt.seal(bigPS, bigKey)
		sortSealed(bigPS)
	}
}

// nextDeadline is when the oldest open batch comes of age, at most
// max_age from now, so a quiet stream still delivers on time.
func (bt *batcher) nextDeadline(parts map[tp]*partState, now time.Time) time.Time {
	next := now.Add(bt.bounds.MaxAge)
	for _, ps := range parts {
		for _, b := range ps.open {
			if d := b.opened.Add(bt.bounds.MaxAge); d.Before(next) {
				next = d
			}
		}
	}
	return next
}

// delivered removes a delivered (or dead-lettered) batch from the
// partition's queue, so the commit point can pass it.
func (bt *batcher) delivered(ps *partState, b *Batch) {
	if ps.gone {
		return // a delivery that ended after its partition was lost
	}
	if i := slices.Index(ps.sealed, b); i >= 0 {
		ps.sealed = slices.Delete(ps.sealed, i, i+1)
		bt.pending -= int64(b.size)
	}
	for _, r := range b.Records {
		release(r)
	}
	clear(b.Events)
}

// release empties a copy that own made and that nothing needs any more:
// the slab keeps its record until every record of the slab is released
// or gone, and a kept record would keep its key, value and headers (a
// value of up to megabytes, outside max_buffered_bytes) with it.
func release(r *kgo.Record) { *r = kgo.Record{} }

// forget drops a partition's batches from the byte counts (a revoke).
func (bt *batcher) forget(ps *partState) {
	ps.gone = true
	for _, b := range ps.open {
		bt.buffered -= int64(b.held())
	}
	for _, b := range ps.sealed {
		bt.pending -= int64(b.size)
	}
}

// commitPoint is the offset up to which everything of the partition has
// been delivered: the first offset of the oldest undelivered batch, open
// or sealed, or the next offset to consume when there is none. Batches
// delivered out of order leave holes; the commit point stops at the first.
func (ps *partState) commitPoint() int64 {
	p := ps.next
	for _, b := range ps.open {
		p = min(p, b.first)
	}
	for _, b := range ps.sealed {
		p = min(p, b.FirstOffset)
	}
	return p
}
