package connectors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
)

// RecordSink is a destination that takes one record per event (Kafka,
// Kinesis, Pub/Sub). The runtime encodes each event once, as JSON with its
// firehose_metadata, renders its key from KeyTemplate, remembers which
// records the destination accepted, retries only the others under its one
// retry policy, and dead-letters a record the destination can never take
// alone. A sink keeps only what its API forces on it.
//
// Write is called concurrently, never with two calls holding records of
// one lane of a partition (see LanesPerPartition), so one key's records
// reach Write one call after another, in order.
type RecordSink interface {
	// KeyTemplate renders each record's key (Kafka's record key, Kinesis's
	// partition key, Pub/Sub's ordering key).
	KeyTemplate() *Template
	// Write writes recs and sets every record's Err: nil when the
	// destination accepted it; an error marked Permanent when it can never
	// take it (over its size limit, say); any other error when it may be
	// tried again. Write must not let a record of a key be accepted after
	// a record of the same key that failed in this call: the failed one
	// is written again later, and would land behind it. Write returns
	// when every record has its outcome or ctx ends; a record without an
	// outcome then carries ctx's error.
	Write(ctx context.Context, recs []*Record)
	// Close releases the sink's resources. It is safe to call twice.
	Close(ctx context.Context) error
}

// Router is a RecordSink whose target (a Kafka topic, a Kinesis stream,
// a Pub/Sub topic) may be rendered per event from a template: the runtime
// renders each record's Target, dead-letters a record whose target the
// destination would refuse as a name (CheckTarget), that would be the
// connector's MaxTargets+1st, or that the destination does not have (the
// sink's error wraps ErrNoTarget), and keeps each key's order per target.
type Router interface {
	// TargetTemplate renders each record's target; nil when the target
	// is fixed.
	TargetTemplate() *Template
	// CheckTarget reports why name is not a target the destination
	// takes.
	CheckTarget(name string) error
}

// TargetTemplate parses a Router's target setting: nil for a fixed
// target, which check must accept, or the template to render per event.
func TargetTemplate(target string, check func(string) error) (*Template, error) {
	if target == "" {
		return nil, errors.New("required")
	}
	if !strings.Contains(target, "{{") {
		return nil, check(target)
	}
	return ParseTemplate(target)
}

// MaxTargets bounds the distinct targets one connector's process writes
// to: an event that would open one more is dead-lettered. Each target
// costs a destination client state (a Pub/Sub publisher, say).
const MaxTargets = 100

// ErrNoTarget marks a routed record's error when the destination says its
// target does not exist (Kafka UNKNOWN_TOPIC_OR_PARTITION, Kinesis
// ResourceNotFoundException, gRPC NotFound): a Router's sink wraps it,
// and the runtime dead-letters the record with class "target" instead
// of retrying it, since an event's fields, which a producer controls,
// chose the name. A fixed target that does not exist is retried, as any
// outage is, until someone creates it.
var ErrNoTarget = errors.New("the destination has no such target")

// Missing targets are remembered, so that later events rendering to one
// are dead-lettered without asking the destination again, for
// MissingTargetTTL (default 1 minute: a target created meanwhile is
// written from then on), and at most MaxMissingTargets of them (1,000)
// at once.
const (
	MissingTargetTTL  = time.Minute
	MaxMissingTargets = 1000
)

// Record is one event as a record sink writes it.
type Record struct {
	Key []byte
	// Target is the topic or stream rendered for the record by a
	// Router's template; "" for the sink's one target.
	Target string
	Value  []byte // the event as JSON, with its firehose_metadata
	// Headers are event_type, account_id and event_id, then the headers
	// the event carries from its producer (a trace context, say).
	Headers []kgo.RecordHeader
	// Err is the outcome Write sets.
	Err error
}

// ErrNotWritten is the outcome of a record a sink did not get to: it is
// written again.
var ErrNotWritten = errors.New("not written")

// Record states, per event of a batch, between attempts.
const (
	recPending uint8 = iota
	recAccepted
	recDead
	recDropped // by an on_error rule
)

// EncodeRecords encodes b's events as a RecordSink's records, with keys
// rendered by key. The runtime does it once per batch, so retries send the
// same bytes.
func EncodeRecords(b *Batch, key *Template) []*Record {
	size := 0
	for _, r := range b.Records {
		size += len(r.Value) + 160 // firehose_metadata
	}
	buf := make([]byte, 0, size)
	out := make([]*Record, len(b.Events))
	all := make([]Record, len(b.Events))
	for i, e := range b.Events {
		start := len(buf)
		buf = AppendEvent(buf, b, i)
		r := &all[i]
		r.Value = buf[start:len(buf):len(buf)]
		r.Key = key.Render(nil, b.Topic, b.Partition, e.Timestamp, e)
		r.Headers = append([]kgo.RecordHeader{
			{Key: RecordHeaders[0], Value: []byte(e.EventType)},
			{Key: RecordHeaders[1], Value: []byte(e.AccountID)},
			{Key: RecordHeaders[2], Value: []byte(e.EventID)},
		}, EventHeaders(b, i)...)
		if b.Replay != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: ReplayHeader, Value: []byte(b.Replay)})
		}
		out[i] = r
	}
	return out
}

// deliverRecords writes b's records to the record sink until each has an
// outcome: accepted, dead-lettered as permanent, or dead-lettered when the
// retries ran out. An attempt that had some records accepted does not
// count against the retry policy's attempts (a throttled stream makes
// progress on every call). It returns an error only when ctx ended, or the
// DLQ could not be written, before every record had an outcome; what was
// accepted is remembered for the next try.
func (w *Worker) deliverRecords(ctx context.Context, cl *kgo.Client, b *Batch) error {
	if b.recs == nil {
		b.SealedAt = time.Now()
		b.recs = EncodeRecords(b, w.key)
		b.recState = make([]uint8, len(b.recs))
		if err := w.route(ctx, cl, b); err != nil {
			return err
		}
	}
	var todo []*Record
	var idx []int
	for attempt := 0; ; {
		todo, idx = todo[:0], idx[:0]
		for i, r := range b.recs {
			if b.recState[i] == recPending {
				r.Err = ErrNotWritten
				todo = append(todo, r)
				idx = append(idx, i)
			}
		}
		if len(todo) > 0 {
			w.writeRecords(ctx, todo)
			if err := w.deadLetterMissing(ctx, cl, b, todo, idx); err != nil {
				return err
			}
		}
		progress := false
		var dead []int
		drops := map[string][]int{}
		var retry, stop, final error
		retries := 0
		for j, r := range todo {
			if b.recState[idx[j]] == recDead {
				continue
			}
			if r.Err == nil {
				b.recState[idx[j]] = recAccepted
				progress = true
				continue
			}
			if ctx.Err() != nil {
				continue // not an answer of the destination's: it stays pending
			}
			d := w.rules.decide(r.Err)
			if d.action != ActionRetry && final == nil {
				final = r.Err
			}
			switch d.action {
			case ActionStop:
				stop = r.Err
			case ActionDLQ:
				dead = append(dead, idx[j])
			case ActionDrop:
				drops[d.rule] = append(drops[d.rule], idx[j])
			default:
				retries++
				if retry == nil {
					retry = r.Err
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if final != nil {
			w.o.Observer.Failed(true)
		}
		if stop != nil {
			w.log.Error("destination refused an event; stopping the connector", "batch", b.ID, "err", stop)
			return ErrStopped
		}
		for rule, is := range drops {
			for _, i := range is {
				b.recState[i] = recDropped
			}
			w.dropped(b, len(is), is[0], rule, b.recs[is[0]].Err)
		}
		if len(dead) > 0 {
			w.log.Warn("destination refused events; sending them to the DLQ", "batch", b.ID, "events", len(dead), "err", b.recs[dead[0]].Err)
			if err := w.deadLetterRecords(ctx, cl, b, dead); err != nil {
				return err
			}
		}
		if retries == 0 {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.o.Observer.Failed(false)
		if progress {
			attempt = 0
		} else {
			attempt++
		}
		if attempt >= w.o.Connector.Retry.MaxAttempts {
			var left []int
			for i, s := range b.recState {
				if s == recPending {
					left = append(left, i)
				}
			}
			w.log.Error("events failed after retries; sending them to the DLQ", "batch", b.ID, "events", len(left), "err", retry)
			if err := w.deadLetterRecords(ctx, cl, b, left, "retries-exhausted"); err != nil {
				return err
			}
			break
		}
		d := w.o.Connector.Retry.backoff(attempt, retry)
		w.stats.Retries.Add(1)
		w.log.Warn("events not accepted; retrying them", "batch", b.ID, "events", retries, "of", len(b.recs), "in", d, "err", retry)
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	accepted := 0
	for _, s := range b.recState {
		if s == recAccepted {
			accepted++
		}
	}
	now := time.Now()
	w.o.Observer.Delivered(b, func(i int) bool { return b.recState[i] != recAccepted }, now)
	w.stats.Delivered.Add(int64(accepted))
	w.stats.Batches.Add(1)
	w.stats.LastDelivery.Store(now.UnixNano())
	return nil
}

// deadLetterRecords writes the dead letters of b's events at idx, each
// with its own record's error as the reason, and marks them dead. class
// is the dead letters' class; none: each record's error's (see dlqClass).
func (w *Worker) deadLetterRecords(ctx context.Context, cl *kgo.Client, b *Batch, idx []int, class ...string) error {
	now := time.Now()
	out := make([]*kgo.Record, len(idx))
	for j, i := range idx {
		cause := b.recs[i].Err
		cl := dlqClass(cause)
		if len(class) > 0 {
			cl = class[0]
		}
		var extra []kgo.RecordHeader
		if resp := response(cause); resp != "" {
			extra = append(extra, kgo.RecordHeader{Key: dlq.HeaderResponse, Value: []byte(resp)})
		}
		out[j] = w.dlqRecord(b.Records[i], dlq.Reason{Stage: w.stage(), Class: cl, Message: fmt.Sprintf("batch %s: %v", b.ID, cause), Extra: extra}, now)
	}
	if err := w.produceDLQ(ctx, cl, out); err != nil {
		return err
	}
	for _, i := range idx {
		b.recState[i] = recDead
	}
	w.stats.DeadLettered.Add(int64(len(idx)))
	return nil
}

// writeRecords writes todo to the record sink, under the rate limit and
// the adaptive window: in one call, or with an events limit in calls of at
// most one bucket each. A key whose record failed in one call sends
// nothing in the later ones: its records stay not written, behind it.
func (w *Worker) writeRecords(ctx context.Context, todo []*Record) {
	size := w.limit.chunk()
	if size == 0 {
		size = len(todo)
	}
	var failed map[string]bool
	for len(todo) > 0 && ctx.Err() == nil {
		call := todo[:min(size, len(todo))]
		todo = todo[len(call):]
		if len(failed) > 0 {
			call = slices.DeleteFunc(slices.Clone(call), func(r *Record) bool { return failed[string(r.Key)] })
			if len(call) == 0 {
				continue
			}
		}
		bytes := 0
		for _, r := range call {
			bytes += len(r.Value)
		}
		_ = w.attempt(ctx, len(call), bytes, func(ctx context.Context) error {
			w.records.Write(ctx, call)
			return writeSignal(call)
		})
		for _, r := range call {
			if r.Err != nil {
				if failed == nil {
					failed = map[string]bool{}
				}
				failed[string(r.Key)] = true
			}
		}
	}
}

// writeSignal is what one write tells the adaptive window: a refusal that
// asks to slow down if any record had one, else the error of a write that
// had no record accepted, else nil.
func writeSignal(call []*Record) error {
	var first error
	accepted := false
	for _, r := range call {
		switch {
		case r.Err == nil:
			accepted = true
		case signalOf(r.Err) == signalBackoff:
			return r.Err
		case first == nil:
			first = r.Err
		}
	}
	if accepted {
		return nil
	}
	return first
}

// route renders each record's target, when the sink routes, and
// dead-letters the records whose target cannot be written: a name the
// destination refuses, or one past MaxTargets.
func (w *Worker) route(ctx context.Context, cl *kgo.Client, b *Batch) error {
	if w.targets == nil {
		return nil
	}
	var dead []int
	now := time.Now()
	for i, r := range b.recs {
		e := b.Events[i]
		r.Target = string(w.targets.tmpl.Render(nil, b.Topic, b.Partition, e.Timestamp, e))
		if err := w.targets.admit(r.Target, now); err != nil {
			r.Err = Describe(Permanent(err, ""), 0, "", ClassRejected)
			dead = append(dead, i)
		}
	}
	if len(dead) == 0 {
		return nil
	}
	w.log.Warn("events whose target cannot be written; sending them to the DLQ", "batch", b.ID, "events", len(dead), "err", b.recs[dead[0]].Err)
	return w.deadLetterRecords(ctx, cl, b, dead, "target")
}

// deadLetterMissing dead-letters, with class "target", the records of
// todo (b's records at idx) that failed with ErrNoTarget, and remembers
// their targets as missing.
func (w *Worker) deadLetterMissing(ctx context.Context, cl *kgo.Client, b *Batch, todo []*Record, idx []int) error {
	if w.targets == nil {
		return nil
	}
	var gone []int
	for j, r := range todo {
		if r.Err != nil && errors.Is(r.Err, ErrNoTarget) {
			w.targets.missed(r.Target, time.Now())
			r.Err = fmt.Errorf("target %q: %w", r.Target, r.Err)
			gone = append(gone, idx[j])
		}
	}
	if len(gone) == 0 {
		return nil
	}
	w.log.Warn("events whose target does not exist; sending them to the DLQ", "batch", b.ID, "events", len(gone), "err", b.recs[gone[0]].Err)
	return w.deadLetterRecords(ctx, cl, b, gone, "target")
}

// targets are a routing connector's template, the targets it writes and
// those the destination said it does not have.
type targets struct {
	tmpl    *Template
	router  Router
	mu      sync.Mutex
	seen    map[string]bool
	missing map[string]time.Time // when the destination said so
}

// missed remembers that the destination does not have name, as of now.
func (t *targets) missed(name string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.seen, name)
	if t.missing == nil {
		t.missing = map[string]time.Time{}
	}
	if len(t.missing) >= MaxMissingTargets {
		for n, at := range t.missing {
			if now.Sub(at) >= MissingTargetTTL {
				delete(t.missing, n)
			}
		}
	}
	if len(t.missing) >= MaxMissingTargets {
		for n := range t.missing { // any one: all are recent
			delete(t.missing, n)
			break
		}
	}
	t.missing[name] = now
}

// admit reports why name cannot be written.
func (t *targets) admit(name string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[name] {
		return nil
	}
	if err := t.router.CheckTarget(name); err != nil {
		return fmt.Errorf("target %q: %w", name, err)
	}
	if at, ok := t.missing[name]; ok {
		if now.Sub(at) < MissingTargetTTL {
			return fmt.Errorf("target %q: %w (as of %s; asked again %s after)", name, ErrNoTarget, at.UTC().Format(time.RFC3339), MissingTargetTTL)
		}
		delete(t.missing, name)
	}
	if len(t.seen) >= MaxTargets {
		return fmt.Errorf("target %q would be one more than the %d this connector writes to (its limit)", name, MaxTargets)
	}
	t.seen[name] = true
	return nil
}
