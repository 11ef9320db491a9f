// Delivery: the window of batches in flight, one batch's delivery to a
// Sink with its retries, and dead letters. A RecordSink's delivery is in
// records.go.

package connectors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"

	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/tracing"
)

func (r RetryPolicy) backoff(attempt int, err error) time.Duration {
	d := r.InitialBackoff << min(attempt, 20)
	if d > r.MaxBackoff || d <= 0 {
		d = r.MaxBackoff
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1) // full jitter
	if ra := retryAfter(err); ra > d {
		d = ra
	}
	return d
}

// encoding admits as many batches to encoding and compression at once as
// the process has cores: the work is CPU-bound, so more at once would
// finish none sooner and only hold more uncompressed bodies (a batch's
// worth each) in memory. It is shared by every connector of the process.
var encoding = make(chan struct{}, runtime.GOMAXPROCS(0))

// Observer hears how deliveries end. Delivered gets the batch, a func
// telling which events of it were dead-lettered instead (nil: none) and
// the acknowledgement time.
type Observer interface {
	Delivered(b *Batch, skip func(i int) bool, at time.Time)
	// Failed hears of an attempt that failed: final (dead-lettered,
	// dropped or stopping) or to be retried.
	Failed(final bool)
	// Dropped hears of n events an on_error rule dropped.
	Dropped(rule string, n int)
}

type nopObserver struct{}

func (nopObserver) Delivered(*Batch, func(int) bool, time.Time) {}

func (nopObserver) Failed(bool) {}

func (nopObserver) Dropped(string, int) {}

// dispatch starts deliveries of sealed batches while the window has room:
// for an object store any batch, for an ordered destination the first
// undelivered batch of each lane of each partition. Called with mu held.
func (w *Worker) dispatch(cl *kgo.Client) {
	now := time.Now()
	for _, ps := range w.parts {
		if ps.revoked {
			continue
		}
		var busy [LanesPerPartition]bool
		for _, b := range ps.sealed {
			if w.inFlight >= w.maxInFlight {
				w.flush() // batches wait for a slot
				return
			}
			if w.b.ordered {
				if busy[b.lane] {
					continue
				}
				busy[b.lane] = true
			}
			if b.sending || now.Before(b.retryAt) || b.cut != nil && !b.cut.recorded {
				continue
			}
			b.sending = true
			ps.active++
			w.inFlight++
			w.deliveries.Add(1)
			go w.deliverOne(ps, b, cl)
		}
	}
}

// deliverOne delivers one batch on its own goroutine and records the
// outcome: delivered (or dead-lettered) batches leave the partition's
// queue, so its commit point can pass them.
func (w *Worker) deliverOne(ps *partState, b *Batch, cl *kgo.Client) {
	defer w.deliveries.Done()
	err := w.deliver(ps.ctx, cl, b)
	w.mu.Lock()
	ps.active--
	w.inFlight--
	b.sending = false
	switch {
	case err == nil:
		w.b.delivered(ps, b)
	case errors.Is(err, ErrStopped):
		w.stopped = true
	case ps.ctx.Err() == nil:
		// Its outcome could not be stored (the DLQ is unreachable): the
		// batch is delivered again, not at once.
		b.retryAt = time.Now().Add(time.Second)
		w.log.Warn("batch not finished; trying it again in 1s", "batch", b.ID, "err", err)
	}
	w.changed.Broadcast()
	w.mu.Unlock()
	w.wakeMu.Lock()
	w.woken = true
	if w.wake != nil {
		w.wake()
	}
	w.wakeMu.Unlock()
}

// nextRetry is how long until the first batch waiting to be tried again
// may be. Called with mu held.
func (w *Worker) nextRetry() time.Duration {
	next := time.Second
	for _, ps := range w.parts {
		for _, b := range ps.sealed {
			if d := time.Until(b.retryAt); d < next {
				next = d
			}
		}
	}
	return max(next, time.Millisecond)
}

func (w *Worker) stage() string { return dlq.ConnectorStage(w.name) }

var errFull = errors.New("full")

// maxSpanLinks bounds the links of a delivery span (OpenTelemetry keeps
// 128 by default).
const maxSpanLinks = 128

// deliverSpan starts the span of one batch's delivery: a child of the
// first event's trace context (the processor's span of it), linked to the
// others' (a batch has many parents, a span one).
func (w *Worker) deliverSpan(ctx context.Context, b *Batch) (context.Context, trace.Span) {
	parent := ctx
	var links []trace.Link
	_ = b.Each(func(run *Batch) error {
		for _, r := range run.Records {
			sc := trace.SpanContextFromContext(tracing.Extract(ctx, r.Headers))
			switch {
			case !sc.IsValid():
			case !trace.SpanContextFromContext(parent).IsValid():
				parent = trace.ContextWithRemoteSpanContext(ctx, sc)
			case len(links) < maxSpanLinks:
				links = append(links, trace.Link{SpanContext: sc})
			default:
				return errFull
			}
		}
		return nil
	})
	return tracing.Tracer().Start(parent, "firehose.deliver", trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("firehose.connector", w.name), attribute.String("firehose.batch_id", b.ID), attribute.Int("firehose.events", b.Len())))
}

// dlqRecord is the DLQ record for r, cut to fit the DLQ topic.
func (w *Worker) dlqRecord(r *kgo.Record, why dlq.Reason, now time.Time) *kgo.Record {
	return dlq.Fit(dlq.Record(w.o.DLQTopic, r, why, now), w.o.DLQMaxBytes)
}

// deliver encodes b and hands it to the sink, retrying per the policy. A
// permanent error, or retries running out, dead-letters the batch's
// records; the partition goes on. It returns an error only when ctx ended
// before the batch had an outcome.
func (w *Worker) deliver(ctx context.Context, cl *kgo.Client, b *Batch) error {
	if w.records != nil {
		if tracing.Enabled() {
			var span trace.Span
			ctx, span = w.deliverSpan(ctx, b)
			defer span.End()
		}
		return w.deliverRecords(ctx, cl, b)
	}
	if b.Body == nil {
		select {
		case encoding <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.SealedAt = time.Now()
		body, err := EncodeBody(w.enc, w.comp, b)
		<-encoding
		if err != nil {
			return w.deadLetter(ctx, cl, b, "encode", err)
		}
		w.mu.Lock()
		b.Body = body
		if ps := w.parts[tp{b.Topic, b.Partition}]; ps != nil && !ps.gone && slices.Contains(ps.sealed, b) {
			// The body is held until delivered too.
			b.size += len(body)
			w.b.pending += int64(len(body))
		}
		w.mu.Unlock()
		b.ContentType = w.enc.ContentType()
		b.ContentEncoding = w.comp.ContentEncoding()
	}
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = w.deliverSpan(ctx, b)
		defer span.End()
	}
	sink := w.o.Sink.(Sink)
	send := func(ctx context.Context) error { return sink.Deliver(ctx, b) }
	for attempt := 0; ; attempt++ {
		err := w.attempt(ctx, b.Len(), len(b.Body), send)
		if err == nil {
			now := time.Now()
			w.o.Observer.Delivered(b, nil, now)
			w.stats.Delivered.Add(int64(b.Len()))
			w.stats.Batches.Add(1)
			w.stats.LastDelivery.Store(now.UnixNano())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := w.rules.decide(err)
		w.o.Observer.Failed(d.action != ActionRetry)
		switch d.action {
		case ActionStop:
			w.log.Error("batch refused by destination; stopping the connector", "batch", b.ID, "events", b.Len(), "rule", d.rule, "err", err)
			return ErrStopped
		case ActionDLQ:
			w.log.Warn("batch refused by destination; sending to DLQ", "batch", b.ID, "events", b.Len(), "rule", d.rule, "err", err)
			return w.deadLetter(ctx, cl, b, dlqClass(err), err)
		case ActionDrop:
			w.dropped(b, b.Len(), 0, d.rule, err)
			return nil
		}
		if attempt+1 >= w.o.Connector.Retry.MaxAttempts {
			w.log.Error("batch failed after retries; sending to DLQ", "batch", b.ID, "attempts", attempt+1, "err", err)
			return w.deadLetter(ctx, cl, b, "retries-exhausted", err)
		}
		delay := w.o.Connector.Retry.backoff(attempt, err)
		w.stats.Retries.Add(1)
		w.log.Warn("delivery failed; retrying", "batch", b.ID, "attempt", attempt+1, "in", delay, "err", err)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// attempt makes one delivery attempt: it waits for the rate limit and for
// a slot of the adaptive window (max_in_flight: auto), then sends; the
// window hears how long the destination took and how it answered.
func (w *Worker) attempt(ctx context.Context, events, bytes int, send func(context.Context) error) error {
	if err := w.limit.wait(ctx, events, bytes); err != nil {
		return err
	}
	if w.window == nil {
		return send(ctx)
	}
	n, err := w.window.acquire(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	err = send(ctx)
	w.window.release(n, time.Since(start), signalOf(err))
	return err
}

// dlqClass is the class a dead letter sent by on_error carries:
// permanent, as before rules existed, or the retryable error's class.
func dlqClass(err error) string {
	f := FailureOf(err)
	switch {
	case f.Permanent:
		return ClassPermanent
	case f.Class != "":
		return f.Class
	}
	return ClassRetryable
}

// dropped counts and logs n events of b that an on_error rule dropped,
// with the first, at index i, as a sample.
func (w *Worker) dropped(b *Batch, n, i int, rule string, err error) {
	w.stats.Dropped.Add(int64(n))
	w.o.Observer.Dropped(rule, n)
	var sample string
	if b.packed == 0 && i < len(b.Events) && b.Events[i] != nil {
		sample = b.Events[i].EventID
	} else if b.packed == 0 && i < len(b.Records) {
		sample = fmt.Sprintf("%s/%d@%d", b.Records[i].Topic, b.Records[i].Partition, b.Records[i].Offset)
	} else {
		sample = fmt.Sprintf("%s/%d@%d", b.Topic, b.Partition, b.FirstOffset)
	}
	w.log.Warn("events dropped by on_error", "rule", rule, "batch", b.ID, "events", n, "sample", sample, "err", err)
}

// sleep waits d, or until ctx ends, and then returns its error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (w *Worker) deadLetter(ctx context.Context, cl *kgo.Client, b *Batch, class string, cause error) error {
	var extra []kgo.RecordHeader
	if resp := response(cause); resp != "" {
		extra = append(extra, kgo.RecordHeader{Key: dlq.HeaderResponse, Value: []byte(resp)})
	}
	now := time.Now()
	// A run at a time: a packed batch is unpacked one pack at a time.
	// A batch whose packs no longer read (never seen) cannot be
	// dead-lettered either: the error says why, and the batch waits.
	return b.Each(func(run *Batch) error {
		recs := make([]*kgo.Record, len(run.Records))
		for i, r := range run.Records {
			recs[i] = w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: class, Message: cause.Error(), Extra: extra}, now)
		}
		if err := w.produceDLQ(ctx, cl, recs); err != nil {
			return err
		}
		w.stats.DeadLettered.Add(int64(len(recs)))
		return nil
	})
}

// produceDLQ writes dead letters and waits for them: offsets past a record
// are committed only once its dead letter is stored.
func (w *Worker) produceDLQ(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("connector %s: write to DLQ %s: %w", w.name, w.o.DLQTopic, err)
	}
	return nil
}
