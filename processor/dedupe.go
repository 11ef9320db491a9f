package processor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// Deduper drops an event whose sequence is less than or equal to the
// highest already passed for its (account, resource): two accounts'
// resources of one id never meet. Its state is kept per raw partition, in
// memory and in the compacted state topic (key: appendStateKey's, value:
// {"seq":N,"at":unix-ms}, written to the same partition number as the raw
// partition), inside the processor's transactions: a restart or a
// rebalance restores exactly the state that matches the committed offsets.
//
// State written before it was kept per account (keyed by the resource id
// alone) is still read: such an entry stands for every account's resource
// of that id until the account's own entry is written, and expires with
// the TTL as any entry does, its tombstone written then.
//
// Within a transaction, updates are pending; End(true) makes them current
// and End(false) throws them away, because the records will be processed
// again.
type Deduper struct {
	ttl   time.Duration
	topic string
	kopts []kgo.Opt
	now   func() time.Time
	log   *slog.Logger
	// dlqTopic is where redriven records must have come from; see
	// redriven.
	dlqTopic string
	// verified holds redrive claims already checked (a transaction that
	// aborts processes its records again), by header and value hash; it
	// is cleared when it reaches maxVerified, so it stays small.
	verifiedMu sync.Mutex
	verified   map[redriveClaim]bool

	parts *partMap[dedupePart]

	// Dropped counts duplicates dropped.
	Dropped atomic.Int64
}

type seqEntry struct {
	seq int64
	at  int64 // unix ms of the last event passed
}

type dedupePart struct {
	seen map[string]seqEntry // by state key
	// legacy holds entries of the earlier form, by resource id alone.
	legacy map[string]seqEntry
	key    []byte // the state key of the event at hand
	// pending holds this transaction's updates, as indexes into
	// updates. An update never assigns the map: assigning an existing
	// string key stores the new key, and the decoded id shares the
	// record's fetch buffer, which a key must not pin (or, with pooled
	// fetch buffers, see overwritten).
	pending   map[string]int
	updates   []seqEntry
	expired   []string // tombstones to write in this transaction
	loadedTo  int64    // state topic offset read up to
	lastSweep time.Time
}

func newDedupePart(now time.Time) *dedupePart {
	return &dedupePart{seen: map[string]seqEntry{}, legacy: map[string]seqEntry{}, pending: map[string]int{}, lastSweep: now}
}

// NewDeduper returns a deduper that writes its state to the state topic
// (the processor's stateStore reads it). Records redriven from dlqTopic,
// and only those, pass it; kopts reach the cluster to check them.
func NewDeduper(topic, dlqTopic string, ttl time.Duration, kopts []kgo.Opt, now func() time.Time, log *slog.Logger) *Deduper {
	return &Deduper{ttl: ttl, topic: topic, dlqTopic: dlqTopic, kopts: kopts, now: now, log: log, parts: newPartMap[dedupePart]()}
}

// redriven reports whether rec was really re-submitted from the DLQ by
// firehose dlq redrive: its redrive header names a dead letter of the
// processor whose key and value are rec's. Any producer can set the header;
// only a record the DLQ holds passes dedupe on it.
func (d *Deduper) redriven(rec *kgo.Record) bool {
	claim := redriveClaim{at: dlq.Header(rec, dlq.HeaderRedrive), value: sha256.Sum256(rec.Value)}
	d.verifiedMu.Lock()
	ok, seen := d.verified[claim]
	d.verifiedMu.Unlock()
	if seen {
		return ok
	}
	ok = d.checkRedrive(claim.at, rec)
	if !ok {
		d.log.Warn("a raw record claims to be redriven from the DLQ but the DLQ holds no such dead letter; dedupe applies", "redrive", claim.at, "partition", rec.Partition, "offset", rec.Offset)
	}
	d.verifiedMu.Lock()
	if d.verified == nil || len(d.verified) >= maxVerified {
		d.verified = make(map[redriveClaim]bool)
	}
	d.verified[claim] = ok
	d.verifiedMu.Unlock()
	return ok
}

// redriveClaim is a redrive header and the hash of the value it came with.
type redriveClaim struct {
	at    string
	value [32]byte
}

// maxVerified bounds the redrive claims remembered.
const maxVerified = 4096

func (d *Deduper) checkRedrive(at string, rec *kgo.Record) bool {
	ps, offs, found := strings.Cut(at, ":")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(offs, 10, 64)
	if !found || perr != nil || oerr != nil || o < 0 || d.dlqTopic == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var dead *kgo.Record
	_, err := readPartition(ctx, d.kopts, d.dlqTopic, int32(p), o, func(r *kgo.Record) {
		if dead == nil && r.Offset == o {
			dead = r
		}
	}, o+1)
	if err != nil || dead == nil {
		return false
	}
	return dlq.Header(dead, dlq.HeaderStage) == "processor" && string(dead.Key) == string(rec.Key) && string(dead.Value) == string(rec.Value)
}

// Name implements Stage.
func (d *Deduper) Name() string { return "dedupe" }

// Apply implements Stage. The partition's state must have been loaded.
func (d *Deduper) Apply(rec *kgo.Record, e *schemas.Event) (bool, error) {
	if len(rec.Headers) > 0 && dlq.Has(rec, dlq.HeaderRedrive) && d.redriven(rec) {
		// Re-submitted by an operator from the DLQ: its sequence may be
		// behind the resource's, and it is wanted anyway. The state is
		// left as it is.
		return true, nil
	}
	dp := d.parts.get(rec.Partition)
	if dp == nil {
		return false, fmt.Errorf("dedupe state of partition %d is not loaded", rec.Partition)
	}
	now := d.now().UnixMilli()
	dp.key = appendStateKey(dp.key[:0], e.AccountID, e.ResourceID)
	var cur seqEntry
	i, pending := dp.pending[string(dp.key)]
	ok := pending
	if ok {
		cur = dp.updates[i]
	} else if cur, ok = dp.seen[string(dp.key)]; !ok {
		cur, ok = dp.legacy[e.ResourceID]
	}
	if ok && now-cur.at < d.ttl.Milliseconds() && e.Sequence <= cur.seq {
		d.Dropped.Add(1)
		return false, nil
	}
	if pending {
		dp.updates[i] = seqEntry{seq: e.Sequence, at: now}
	} else {
		// A key of its own: the scratch key is reused.
		dp.pending[string(dp.key)] = len(dp.updates)
		dp.updates = append(dp.updates, seqEntry{seq: e.Sequence, at: now})
	}
	return true, nil
}

// loader implements stateStage.
func (d *Deduper) loader(partition int32, fresh bool) stateLoader {
	dp := d.parts.get(partition)
	if fresh || dp == nil {
		dp, fresh = newDedupePart(d.now()), true
	}
	now := d.now().UnixMilli()
	return &partLoader[dedupePart]{parts: d.parts, partition: partition, fresh: fresh, part: dp, at: &dp.loadedTo,
		apply: func(dp *dedupePart, r *kgo.Record) { d.load(dp, r, now) },
		loaded: func(dp *dedupePart) {
			d.log.Info("dedupe state loaded", "partition", partition, "resources", len(dp.seen), "to_offset", dp.loadedTo)
		}}
}

// load applies one state-topic record to a partition's state.
func (d *Deduper) load(dp *dedupePart, r *kgo.Record, now int64) {
	key := string(r.Key)
	if strings.HasPrefix(key, profileKeyPrefix) {
		return // the profiles stage's
	}
	m := dp.seen
	if !strings.HasPrefix(key, stateKeyPrefix) {
		m = dp.legacy
	}
	if r.Value == nil {
		delete(m, key)
		return
	}
	v := gjson.ParseBytes(r.Value)
	e := seqEntry{seq: v.Get("seq").Int(), at: v.Get("at").Int()}
	if now-e.at >= d.ttl.Milliseconds() {
		delete(m, key)
		return
	}
	m[key] = e
}

// Drop forgets partitions that were revoked or lost.
func (d *Deduper) Drop(partitions []int32) { d.parts.drop(partitions) }

// Records returns the state records of a partition's pending updates and
// expired entries, for the current transaction. Expired entries are swept
// from memory at most once a minute.
func (d *Deduper) Records(partition int32, out []*kgo.Record) []*kgo.Record {
	dp := d.parts.get(partition)
	if dp == nil {
		return out
	}
	now := d.now()
	if now.Sub(dp.lastSweep) >= time.Minute {
		dp.lastSweep = now
		limit := now.UnixMilli() - d.ttl.Milliseconds()
		for k, e := range dp.seen {
			if e.at <= limit {
				if _, updated := dp.pending[k]; !updated {
					dp.expired = append(dp.expired, k)
				}
				delete(dp.seen, k)
			}
		}
		for k, e := range dp.legacy {
			if e.at <= limit {
				dp.expired = append(dp.expired, k)
				delete(dp.legacy, k)
			}
		}
	}
	// A transaction writes about one state record per resource it saw,
	// nearly one per event: the records, keys and values are made in
	// three allocations, not three each.
	recs := make([]kgo.Record, len(dp.pending)+len(dp.expired))
	size := 0
	for k := range dp.pending {
		size += len(k) + len(`{"seq":,"at":}`) + 2*20
	}
	for _, k := range dp.expired {
		size += len(k)
	}
	buf := make([]byte, 0, size)
	piece := func(from int) []byte { return buf[from:len(buf):len(buf)] }
	n := 0
	for k, i := range dp.pending {
		e := dp.updates[i]
		at := len(buf)
		buf = append(buf, k...)
		key := piece(at)
		at = len(buf)
		buf = append(buf, `{"seq":`...)
		buf = strconv.AppendInt(buf, e.seq, 10)
		buf = append(buf, `,"at":`...)
		buf = strconv.AppendInt(buf, e.at, 10)
		buf = append(buf, '}')
		recs[n] = kgo.Record{Topic: d.topic, Partition: partition, Key: key, Value: piece(at)}
		out = append(out, &recs[n])
		n++
	}
	for _, k := range dp.expired {
		at := len(buf)
		buf = append(buf, k...)
		recs[n] = kgo.Record{Topic: d.topic, Partition: partition, Key: piece(at)}
		out = append(out, &recs[n])
		n++
	}
	return out
}

// End finishes the transaction for every partition: on commit, pending
// updates become current; on abort, they are thrown away.
func (d *Deduper) End(committed bool) {
	d.parts.each(func(dp *dedupePart) {
		if committed {
			for k, i := range dp.pending {
				dp.seen[k] = dp.updates[i]
			}
		}
		clear(dp.pending)
		dp.updates = dp.updates[:0]
		dp.expired = dp.expired[:0]
	})
}

// Resources returns how many resources are tracked, for metrics and
// capacity planning.
func (d *Deduper) Resources() int {
	n := 0
	d.parts.each(func(dp *dedupePart) { n += len(dp.seen) + len(dp.legacy) })
	return n
}
