package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/schemas"
)

// RetryPolicy bounds how a failing batch is retried before it is
// dead-lettered. The backoff doubles from Initial to Max with full jitter;
// a destination's Retry-After replaces it when longer.
type RetryPolicy struct {
	MaxAttempts int           // default 10; attempts in all, the first included
	Initial     time.Duration // default 200ms
	Max         time.Duration // default 30s
}

func (r *RetryPolicy) defaults() {
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 10
	}
	if r.Initial == 0 {
		r.Initial = 200 * time.Millisecond
	}
	if r.Max == 0 {
		r.Max = 30 * time.Second
	}
}

func (r RetryPolicy) backoff(attempt int, err error) time.Duration {
	d := r.Initial << min(attempt, 20)
	if d > r.Max || d <= 0 {
		d = r.Max
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1) // full jitter
	if ra := retryAfter(err); ra > d {
		d = ra
	}
	return d
}

// encodeBuffers hold encoded, uncompressed batches between encoding and
// compression; a batch is megabytes, so they are reused.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Options configure a Worker.
type Options struct {
	Connector config.Connector
	DLQTopic  string
	// DLQMaxBytes is the largest record the DLQ topic takes (default
	// config.ProducerMaxBytes); a dead letter over it has its value cut.
	DLQMaxBytes int
	// EventsEncoding is the encoding of the topic read (json or avro).
	EventsEncoding string
	// Codec reads the topic instead, when set (a Schema Registry
	// encoding: see internal/registry).
	Codec schemas.Codec
	// PathTemplate, if set, splits batches by the rendered path and
	// prefixes each batch's Key with it.
	PathTemplate string
	// Sink is the destination: a Sink (one body per batch) or a
	// RecordSink (one record per event).
	Sink  Destination
	Kafka []kgo.Opt
	Log   *slog.Logger
	Retry RetryPolicy
	// Observer, if set, hears of every delivery attempt (metrics).
	Observer Observer
	// Beat, if set, is beaten at every round of the poll loop (liveness).
	Beat *heartbeat.Beat
	// RevokeTimeout bounds how long a revoke waits for the revoked
	// partitions' deliveries before cancelling them; default 30s, and the
	// app passes half the group's rebalance timeout.
	RevokeTimeout time.Duration
	// ShutdownTimeout bounds a stop: the flush of open batches, the last
	// commits and leaving the group (default config.DefaultShutdownTimeout). A
	// negative value stops at once without flushing or committing, as a
	// crash does; tests use it.
	ShutdownTimeout time.Duration
}

// CommitMetadataPrefix starts the metadata of every commit a connector
// makes; the RFC 3339 time of the commit follows.
const CommitMetadataPrefix = "firehose delivered_at="

// Observer hears how deliveries end. Delivered gets the batch, a func
// telling which events of it were dead-lettered instead (nil: none) and
// the acknowledgement time.
type Observer interface {
	Delivered(b *Batch, skip func(i int) bool, at time.Time)
	Failed(permanent bool)
}

type nopObserver struct{}

func (nopObserver) Delivered(*Batch, func(int) bool, time.Time) {}
func (nopObserver) Failed(bool)                                 {}

// PathTemplater is implemented by sinks that store objects under paths
// (files, S3): the runtime splits batches by the rendered template and
// prefixes each Batch.Key with it.
type PathTemplater interface {
	PathTemplate() string
}

// Stats are running totals, safe to read concurrently.
type Stats struct {
	Consumed, Filtered, Delivered, Batches, DeadLettered, Retries atomic.Int64
	LastDelivery                                                  atomic.Int64 // unix nanos
}

// ErrStopped is returned by Run when a permanent error stopped the
// connector under the stop policy.
var ErrStopped = errors.New("connector stopped by a permanent error (on_permanent_error: stop)")

// Worker runs one connector: its consumer group, batches and deliveries.
type Worker struct {
	o     Options
	name  string
	log   *slog.Logger
	codec schemas.Codec
	enc   Encoder
	comp  Compressor
	tmpl  *Template
	// records is the sink when it is a RecordSink, and key renders each
	// record's key.
	records RecordSink
	key     *Template
	filter  *filter.Filter
	stats   Stats
	ready   atomic.Bool
	// b cuts records into batches; mu guards it.
	b *batcher

	// mu guards parts, the delivery window and pending. The poll loop
	// adds records and starts deliveries; deliveries end on their own
	// goroutines; the group's callbacks remove partitions. changed is
	// signalled whenever a delivery ends.
	mu      sync.Mutex
	changed *sync.Cond
	parts   map[tp]*partState
	// inFlight counts deliveries under way, at most maxInFlight.
	inFlight, maxInFlight int
	// paused: fetching is paused while open and undelivered batches
	// hold more than MaxBufferedBytes.
	paused bool
	// stopped is set by a delivery that hit a permanent error under the
	// stop policy.
	stopped bool
	// deliveries owns the delivery goroutines; dctx is their context,
	// which outlives the poll loop's so that a stop can finish them.
	deliveries sync.WaitGroup
	dctx       context.Context
	// wake cuts the poll short when a delivery ends, so its commit and
	// the next deliveries do not wait for records or the batch age.
	wakeMu sync.Mutex
	wake   context.CancelFunc
	woken  bool
}

// New checks the options; it does no I/O.
func New(o Options) (*Worker, error) {
	var key *Template
	var records RecordSink
	switch s := o.Sink.(type) {
	case Sink:
	case RecordSink:
		key, records = s.KeyTemplate(), s
	default:
		return nil, fmt.Errorf("connector %s: %T is neither a Sink nor a RecordSink", o.Connector.Name, o.Sink)
	}
	codec := o.Codec
	if codec == nil {
		var err error
		if codec, err = schemas.RecordCodecFor(o.EventsEncoding); err != nil {
			return nil, err
		}
	}
	enc, err := NewEncoder(o.Connector.Encoding, o.Connector.AvroCodec)
	if err != nil {
		return nil, err
	}
	comp, err := NewCompressor(o.Connector.Compression)
	if err != nil {
		return nil, err
	}
	if pt, ok := o.Sink.(PathTemplater); ok && o.PathTemplate == "" {
		o.PathTemplate = pt.PathTemplate()
	}
	var tmpl *Template
	if o.PathTemplate != "" {
		if tmpl, err = ParseTemplate(o.PathTemplate); err != nil {
			return nil, err
		}
	}
	f, err := filter.Compile(o.Connector.Filter)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	if o.Retry == (RetryPolicy{}) {
		r := o.Connector.Retry
		o.Retry = RetryPolicy{MaxAttempts: r.MaxAttempts, Initial: r.InitialBackoff, Max: r.MaxBackoff}
	}
	o.Retry.defaults()
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = config.DefaultShutdownTimeout
	}
	if o.RevokeTimeout <= 0 {
		o.RevokeTimeout = 30 * time.Second
	}
	if o.DLQMaxBytes == 0 {
		o.DLQMaxBytes = config.ProducerMaxBytes
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	_, objects := o.Sink.(PathTemplater)
	w := &Worker{
		o: o, name: o.Connector.Name,
		log:   o.Log.With("connector", o.Connector.Name),
		codec: codec, enc: enc, comp: comp, tmpl: tmpl, key: key, records: records, filter: f,
		parts:       make(map[tp]*partState),
		maxInFlight: max(o.Connector.MaxInFlight, 1),
		b: &batcher{name: o.Connector.Name, bounds: o.Connector.Batch, limit: int64(o.Connector.MaxBufferedBytes),
			ordered: !objects, tmpl: tmpl, processingTime: o.Connector.TimeSource == "processing",
			ext: enc.Extension() + comp.Extension()},
	}
	w.changed = sync.NewCond(&w.mu)
	return w, nil
}

// Stats returns the running totals.
func (w *Worker) Stats() *Stats { return &w.stats }

// Ready reports whether the worker has been assigned partitions.
func (w *Worker) Ready() bool { return w.ready.Load() }

// Run consumes and delivers until ctx ends, then flushes open batches
// within Options.ShutdownTimeout, commits what was delivered and leaves the
// group. It returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	c := w.o.Connector
	opts := append([]kgo.Opt{}, w.o.Kafka...)
	opts = append(opts,
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(config.ProducerMaxBytes),
		kgo.OnPartitionsAssigned(w.assigned),
		kgo.OnPartitionsRevoked(w.revoked),
		kgo.OnPartitionsLost(w.lost),
	)
	// Deliveries outlive the poll loop's context: a stop lets those
	// under way finish, within the shutdown timeout. Set before the
	// client exists: it joins the group, and assigns, at once.
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	w.mu.Lock()
	w.dctx = dctx
	w.mu.Unlock()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("connector %s: create client: %w", w.name, err)
	}
	w.log.Info("connector started", "topic", c.Topic, "group", c.Group, "max_events", c.Batch.MaxEvents, "max_bytes", int64(c.Batch.MaxBytes), "max_age", c.Batch.MaxAge)

	err = w.loop(ctx, cl)
	if w.o.ShutdownTimeout < 0 {
		// A crash: nothing flushed, nothing more committed.
		dcancel()
		w.deliveries.Wait()
		cl.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.ShutdownTimeout)
	defer cancel()
	w.mu.Lock()
	for _, ps := range w.parts {
		w.b.sealAll(ps)
	}
	w.mu.Unlock()
	if derr := w.drain(sctx, cl); err == nil && derr != nil {
		err = derr
	}
	dcancel()
	w.deliveries.Wait()
	kafkaclient.CloseWithin(sctx, cl.Close, w.log)
	w.log.Info("connector stopped", "delivered", w.stats.Delivered.Load())
	return err
}

func (w *Worker) loop(ctx context.Context, cl *kgo.Client) error {
	for {
		w.o.Beat.Beat()
		// At least every few seconds, so that an idle loop comes round.
		w.mu.Lock()
		deadline := w.b.nextDeadline(w.parts, time.Now())
		w.mu.Unlock()
		if idle := time.Now().Add(5 * time.Second); idle.Before(deadline) {
			deadline = idle
		}
		pollCtx, cancel := context.WithDeadline(ctx, deadline)
		w.wakeMu.Lock()
		if w.woken {
			// A delivery ended since the last dispatch: its commit and
			// the next deliveries must not wait for this poll.
			w.woken = false
			cancel()
		}
		w.wake = cancel
		w.wakeMu.Unlock()
		fetches := cl.PollRecords(pollCtx, w.pollSize())
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				w.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		// Schemas the registry has to tell first: an outage waits
		// here instead of dead-lettering.
		if err := schemas.Resolve(schemas.WithProgress(ctx, w.o.Beat.Beat), w.codec, kafkaclient.Values(fetches)); err != nil {
			return nil
		}
		var dead []*kgo.Record
		now := time.Now()
		w.mu.Lock()
		fetches.EachPartition(func(f kgo.FetchTopicPartition) {
			ps := w.parts[tp{f.Topic, f.Partition}]
			if ps == nil {
				return // revoked after this fetch was taken
			}
			for _, r := range f.Records {
				w.stats.Consumed.Add(1)
				ps.next, ps.epoch = r.Offset+1, r.LeaderEpoch
				if len(r.Headers) > 0 && dlq.Has(r, dlq.HeaderConnector) && dlq.Header(r, dlq.HeaderConnector) != w.name {
					w.stats.Filtered.Add(1) // redriven for another connector
					continue
				}
				e, err := w.codec.Decode(r.Value)
				if err != nil {
					dead = append(dead, w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: schemas.ClassOf(err), Message: schemas.Detail(err)}, now))
					continue
				}
				keep, err := w.filter.Match(e)
				if err != nil {
					dead = append(dead, w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: "filter", Message: err.Error()}, now))
					continue
				}
				if !keep {
					w.stats.Filtered.Add(1)
					continue
				}
				delete(e.Extra, MetadataKey) // a redriven delivered event: replace, don't repeat
				w.b.add(ps, r, e, now)
			}
		})
		for _, ps := range w.parts {
			w.b.sealAged(ps, now)
		}
		w.b.sealOverCap(w.parts)
		w.dispatch(cl)
		w.backpressure(cl)
		stopped := w.stopped
		w.mu.Unlock()
		if len(dead) > 0 {
			if err := w.produceDLQ(ctx, cl, dead); err != nil {
				return err
			}
		}
		w.commit(ctx, cl, nil)
		if stopped {
			return ErrStopped
		}
	}
}

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
				return
			}
			if w.b.ordered {
				if busy[b.lane] {
					continue
				}
				busy[b.lane] = true
			}
			if b.sending || now.Before(b.retryAt) {
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

// pollSize is how many records one poll takes: what fits in the buffer
// cap at the average record size seen, between 100 and 10,000, so a poll
// cannot carry the worker far past max_buffered_bytes.
func (w *Worker) pollSize() int {
	limit := int64(w.o.Connector.MaxBufferedBytes)
	w.mu.Lock()
	room := limit - w.b.pending - w.b.buffered
	avg := max(w.b.avgRecord, 256)
	w.mu.Unlock()
	if limit <= 0 {
		return 10000
	}
	return int(min(max(room/avg, 100), 10000))
}

// backpressure pauses fetching while open and undelivered batches hold
// more than MaxBufferedBytes, and resumes below half of it. Called with
// mu held.
func (w *Worker) backpressure(cl *kgo.Client) {
	limit := int64(w.o.Connector.MaxBufferedBytes)
	if limit <= 0 {
		return
	}
	held := w.b.pending + w.b.buffered
	switch {
	case !w.paused && held >= limit:
		w.paused = true
		cl.PauseFetchTopics(w.o.Connector.Topic)
		w.log.Debug("fetching paused: undelivered batches hold max_buffered_bytes", "bytes", held)
	case w.paused && held < limit/2:
		w.paused = false
		cl.ResumeFetchTopics(w.o.Connector.Topic)
	}
}

// drain delivers everything sealed, within ctx, and commits it: the last
// act of a stop.
func (w *Worker) drain(ctx context.Context, cl *kgo.Client) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.changed.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	for ctx.Err() == nil && !w.stopped {
		w.dispatch(cl)
		left := 0
		for _, ps := range w.parts {
			left += len(ps.sealed)
		}
		if left == 0 {
			break
		}
		if w.inFlight == 0 {
			// Only batches waiting to be tried again: wake when the
			// first may be.
			t := time.AfterFunc(w.nextRetry(), func() {
				w.mu.Lock()
				w.changed.Broadcast()
				w.mu.Unlock()
			})
			w.changed.Wait()
			t.Stop()
			continue
		}
		w.changed.Wait()
	}
	stopped := w.stopped
	w.mu.Unlock()
	w.commit(ctx, cl, nil)
	if stopped {
		return ErrStopped
	}
	return nil
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

func (w *Worker) stage() string { return "connector:" + w.name }

// maxSpanLinks bounds the links of a delivery span (OpenTelemetry keeps
// 128 by default).
const maxSpanLinks = 128

// deliverSpan starts the span of one batch's delivery: a child of the
// first event's trace context (the processor's span of it), linked to the
// others' (a batch has many parents, a span one).
func (w *Worker) deliverSpan(ctx context.Context, b *Batch) (context.Context, trace.Span) {
	parent := ctx
	var links []trace.Link
	for _, r := range b.Records {
		sc := trace.SpanContextFromContext(tracing.Extract(ctx, r.Headers))
		switch {
		case !sc.IsValid():
		case !trace.SpanContextFromContext(parent).IsValid():
			parent = trace.ContextWithRemoteSpanContext(ctx, sc)
		case len(links) < maxSpanLinks:
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return tracing.Tracer().Start(parent, "firehose.deliver", trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("firehose.connector", w.name), attribute.String("firehose.batch_id", b.ID), attribute.Int("firehose.events", len(b.Records))))
}

// dlqRecord is the DLQ record for r, cut to fit the DLQ topic.
func (w *Worker) dlqRecord(r *kgo.Record, why dlq.Reason, now time.Time) *kgo.Record {
	return dlq.Fit(dlq.Record(w.o.DLQTopic, r, why, now), w.o.DLQMaxBytes)
}

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
		b.SealedAt = time.Now()
		size := 0
		for _, r := range b.Records {
			size += len(r.Value) + 128 // firehose_metadata, separators
		}
		bufp := encodeBuffers.Get().(*[]byte)
		raw, err := w.enc.Encode(slices.Grow((*bufp)[:0], size), b)
		if err == nil {
			if _, none := w.comp.(None); none {
				b.Body = slices.Clone(raw)
			} else {
				b.Body, err = w.comp.Compress(make([]byte, 0, len(raw)/4), raw)
			}
		}
		*bufp = raw[:0]
		encodeBuffers.Put(bufp)
		if err != nil {
			return w.deadLetter(ctx, cl, b, "encode", err)
		}
		b.ContentType = w.enc.ContentType()
		b.ContentEncoding = w.comp.ContentEncoding()
	}
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = w.deliverSpan(ctx, b)
		defer span.End()
	}
	for attempt := 0; ; attempt++ {
		err := w.o.Sink.(Sink).Deliver(ctx, b)
		if err == nil {
			now := time.Now()
			w.o.Observer.Delivered(b, nil, now)
			w.stats.Delivered.Add(int64(len(b.Records)))
			w.stats.Batches.Add(1)
			w.stats.LastDelivery.Store(now.UnixNano())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.o.Observer.Failed(IsPermanent(err))
		if IsPermanent(err) {
			if w.o.Connector.OnPermanentError == "stop" {
				w.log.Error("batch rejected by destination; stopping the connector", "batch", b.ID, "events", len(b.Records), "err", err)
				return ErrStopped
			}
			w.log.Warn("batch rejected by destination; sending to DLQ", "batch", b.ID, "events", len(b.Records), "err", err)
			return w.deadLetter(ctx, cl, b, "permanent", err)
		}
		if attempt+1 >= w.o.Retry.MaxAttempts {
			w.log.Error("batch failed after retries; sending to DLQ", "batch", b.ID, "attempts", attempt+1, "err", err)
			return w.deadLetter(ctx, cl, b, "retries-exhausted", err)
		}
		d := w.o.Retry.backoff(attempt, err)
		w.stats.Retries.Add(1)
		w.log.Warn("delivery failed; retrying", "batch", b.ID, "attempt", attempt+1, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (w *Worker) deadLetter(ctx context.Context, cl *kgo.Client, b *Batch, class string, cause error) error {
	var extra []kgo.RecordHeader
	if resp := response(cause); resp != "" {
		extra = append(extra, kgo.RecordHeader{Key: dlq.HeaderResponse, Value: []byte(resp)})
	}
	now := time.Now()
	recs := make([]*kgo.Record, len(b.Records))
	for i, r := range b.Records {
		recs[i] = w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: class, Message: cause.Error(), Extra: extra}, now)
	}
	if err := w.produceDLQ(ctx, cl, recs); err != nil {
		return err
	}
	w.stats.DeadLettered.Add(int64(len(recs)))
	return nil
}

// produceDLQ writes dead letters and waits for them: offsets past a record
// are committed only once its dead letter is stored.
func (w *Worker) produceDLQ(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("connector %s: write to DLQ %s: %w", w.name, w.o.DLQTopic, err)
	}
	return nil
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
