package connectors

import (
	"context"
	"errors"
	"fmt"
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

// Record is one event as a record sink writes it.
type Record struct {
	Key   []byte
	Value []byte // the event as JSON, with its firehose_metadata
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
			w.records.Write(ctx, todo)
		}
		progress := false
		var dead []int
		var retry error
		retries := 0
		for j, r := range todo {
			switch {
			case r.Err == nil:
				b.recState[idx[j]] = recAccepted
				progress = true
			case IsPermanent(r.Err):
				dead = append(dead, idx[j])
			default:
				retries++
				if retry == nil {
					retry = r.Err
				}
			}
		}
		if len(dead) > 0 {
			w.o.Observer.Failed(true)
			if w.o.Connector.StopsOnPermanentError() {
				w.log.Error("destination refused an event; stopping the connector", "batch", b.ID, "events", len(dead), "err", b.recs[dead[0]].Err)
				return ErrStopped
			}
			w.log.Warn("destination refused events; sending them to the DLQ", "batch", b.ID, "events", len(dead), "err", b.recs[dead[0]].Err)
			if err := w.deadLetterRecords(ctx, cl, b, dead, "permanent"); err != nil {
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
// with its own record's error as the reason, and marks them dead.
func (w *Worker) deadLetterRecords(ctx context.Context, cl *kgo.Client, b *Batch, idx []int, class string) error {
	now := time.Now()
	out := make([]*kgo.Record, len(idx))
	for j, i := range idx {
		cause := b.recs[i].Err
		var extra []kgo.RecordHeader
		if resp := response(cause); resp != "" {
			extra = append(extra, kgo.RecordHeader{Key: dlq.HeaderResponse, Value: []byte(resp)})
		}
		out[j] = w.dlqRecord(b.Records[i], dlq.Reason{Stage: w.stage(), Class: class, Message: fmt.Sprintf("batch %s: %v", b.ID, cause), Extra: extra}, now)
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
