package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// Options configure a Worker.
type Options struct {
	// Connector is the connector's settings, as config loads them or
	// built in code; zero fields take their defaults (Defaults).
	Connector Config
	DLQTopic  string
	// DLQMaxBytes is the largest record the DLQ topic takes (default
	// kafkaclient.ProducerMaxBytes); a dead letter over it has its value cut.
	DLQMaxBytes int
	// EventsEncoding is the encoding of the topic read (json or avro).
	EventsEncoding string
	// Codec reads the topic instead, when set (a Schema Registry
	// encoding: see app/codecs).
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
	// Replay, if set, makes this a replay job's worker (see replay.go):
	// it reads the job's range only, and marks what it delivers.
	Replay *Replay
	// ShutdownTimeout bounds a stop: the flush of open batches, the last
	// commits and leaving the group (default kafkaclient.DefaultShutdownTimeout). A
	// negative value stops at once without flushing or committing, as a
	// crash does; tests use it.
	ShutdownTimeout time.Duration
}

// PathTemplater is implemented by sinks that store objects under paths
// (files, S3): the runtime splits batches by the rendered template and
// prefixes each Batch.Key with it.
type PathTemplater interface {
	PathTemplate() string
}

// Flusher is implemented by sinks that acknowledge a batch only once
// they have committed it with others (Iceberg's commit interval): Flush
// asks them to commit what they hold now rather than at their next
// interval, because the runtime is waiting for those batches: a stop or a
// revoke, or the connector held up (every delivery slot taken, or
// fetching paused at max_buffered_bytes). It does not block.
type Flusher interface {
	Flush()
}

// flush asks the sink to commit what it holds, if it holds any.
func (w *Worker) flush() {
	if f, ok := w.o.Sink.(Flusher); ok {
		f.Flush()
	}
}

// Stats are running totals, safe to read concurrently.
type Stats struct {
	Consumed, Filtered, Delivered, Batches, DeadLettered, Retries atomic.Int64
	// Dropped counts events on_error rules dropped.
	Dropped      atomic.Int64
	LastDelivery atomic.Int64 // unix nanos
	// InFlightLimit is the bound on deliveries in flight: max_in_flight,
	// or with auto the adaptive window's current limit.
	InFlightLimit atomic.Int64
}

// ErrStopped is returned by Run when a delivery error stopped the
// connector: an on_error rule with action stop, or a permanent error
// under on_permanent_error: stop.
var ErrStopped = errors.New("connector stopped by a delivery error (on_error or on_permanent_error: stop)")

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
	// targets render each record's target, for a Router with a
	// template; nil otherwise.
	targets *targets
	// header: decode only the fields the batches need (see decode).
	header bool
	filter *filter.Filter
	shape  *transform.Transform // nil without transform steps
	stats  Stats
	// rules choose what a failed delivery does (on_error); limit and
	// window gate every attempt (rate_limit, max_in_flight: auto; nil
	// when not set).
	rules  errorRules
	limit  *limiter
	window *window
	ready  atomic.Bool
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
	o.Connector.Defaults()
	shape, err := transform.Compile(o.Connector.Transform)
	if err != nil {
		return nil, fmt.Errorf("transform: %w", err)
	}
	enc, comp, err := newBody(o.Connector, shape)
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
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = kafkaclient.DefaultShutdownTimeout
	}
	if o.RevokeTimeout <= 0 {
		o.RevokeTimeout = 30 * time.Second
	}
	if o.DLQMaxBytes == 0 {
		o.DLQMaxBytes = kafkaclient.ProducerMaxBytes
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	_, objects := o.Sink.(PathTemplater)
	w := &Worker{
		o: o, name: o.Connector.Name,
		log:   o.Log.With("connector", o.Connector.Name),
		codec: codec, enc: enc, comp: comp, tmpl: tmpl, key: key, records: records, filter: f, shape: shape,
		parts:       make(map[tp]*partState),
		maxInFlight: int(o.Connector.MaxInFlight),
		rules:       compileErrorRules(o.Connector),
		limit:       newLimiter(o.Connector.RateLimit),
		b: &batcher{name: o.Connector.Name, bounds: o.Connector.Batch, limit: int64(o.Connector.MaxBufferedBytes),
			ordered: !objects, recordCuts: objects, tmpl: tmpl, processingTime: o.Connector.ProcessingTime(),
			// Avro bodies and record sinks' keys and headers need the
			// decoded events; JSON bodies splice the processor's bytes.
			splice: records == nil && o.Connector.Encoding != "avro" && o.Connector.Encoding != "parquet" && isJSON(codec),
			ext:    enc.Extension() + comp.Extension(),
			pack:   objects && records == nil, packAt: PackBytes, decode: codec.Decode},
	}
	if r := o.Replay; r != nil {
		// Its own batch ids, object names and marks: never mistaken
		// for live delivery's.
		w.b.name += "-replay-" + r.ID
		w.b.ext = ".replay-" + r.ID + w.b.ext
		w.b.replay = r.ID
		w.log = w.log.With("replay", r.ID)
	}
	// Transforms read the whole event.
	w.header = w.b.splice && f.Scalar() && shape == nil
	if r, ok := o.Sink.(Router); ok && r.TargetTemplate() != nil {
		w.targets = &targets{tmpl: r.TargetTemplate(), router: r, seen: map[string]bool{}}
	}
	if o.Connector.MaxInFlight == InFlightAuto {
		// The window bounds requests; as many batches may wait for it.
		w.maxInFlight = o.Connector.MaxInFlightLimit
		w.window = newWindow(w.maxInFlight, func(n int) { w.stats.InFlightLimit.Store(int64(n)) })
	} else {
		w.stats.InFlightLimit.Store(int64(w.maxInFlight))
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
		kgo.ProducerBatchMaxBytes(kafkaclient.ProducerMaxBytes),
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
	w.log.Info("connector started", "topic", c.Topic, "group", c.Group, "max_events", c.Batch.MaxEvents, "max_bytes", c.Batch.MaxBytes, "max_age", c.Batch.MaxAge)

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
		if err := schemas.Resolve(ctx, w.codec, kafkaclient.Values(fetches)); err != nil {
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
				if rp := w.o.Replay; rp != nil {
					if until, ok := rp.Until[r.Partition]; !ok || r.Offset >= until {
						// Past the job's range: this partition is done.
						cl.PauseFetchPartitions(map[string][]int32{r.Topic: {r.Partition}})
						break
					}
					if r.Attrs.IsControl() {
						ps.next = r.Offset + 1 // a transaction's marker: nothing to deliver
						continue
					}
				}
				w.stats.Consumed.Add(1)
				ps.next, ps.epoch = r.Offset+1, r.LeaderEpoch
				if !w.addressed(r) {
					w.stats.Filtered.Add(1) // redriven for another connector, or read back for a replay job
					continue
				}
				// The event borrows the copy's memory, not the fetch's.
				r = ps.own(r)
				e, err := w.decode(r.Value)
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
					release(r)
					continue
				}
				if err := w.checkColumns(e); err != nil {
					dead = append(dead, w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: schemas.ClassInvalid, Message: err.Error()}, now))
					continue
				}
				var shaped []byte
				if w.shape != nil {
					// The record's value is the event, unless it was
					// delivered before (its old metadata is dropped).
					var src []byte
					if e.Extra.Get(MetadataKey) != nil {
						e.Extra.Delete(MetadataKey)
					} else if isJSON(w.codec) {
						src = r.Value
					}
					if shaped, err = w.shape.Apply(nil, e, src); err != nil {
						dead = append(dead, w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: "transform", Message: err.Error()}, now))
						continue
					}
					if typed, ok := w.enc.(interface{ Check([]byte) error }); ok { // Parquet, Avro
						if err := typed.Check(shaped); err != nil {
							dead = append(dead, w.dlqRecord(r, dlq.Reason{Stage: w.stage(), Class: schemas.ClassInvalid, Message: err.Error()}, now))
							continue
						}
					}
				}
				w.b.add(ps, r, e, shaped, now)
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
		if w.commit(ctx, cl, nil) {
			// Batches whose cuts were just recorded may go now.
			w.mu.Lock()
			w.dispatch(cl)
			w.mu.Unlock()
		}
		if stopped {
			return ErrStopped
		}
	}
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
	if w.paused {
		w.flush() // what the sink holds may be what holds the bytes
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
	w.commit(ctx, cl, nil) // record the cuts of the batches sealed for the stop
	w.mu.Lock()
	for ctx.Err() == nil && !w.stopped {
		w.dispatch(cl)
		left, unrecorded := 0, 0
		for _, ps := range w.parts {
			left += len(ps.sealed)
			for _, b := range ps.sealed {
				if b.cut != nil && !b.cut.recorded {
					unrecorded++
				}
			}
		}
		if left == 0 {
			break
		}
		if unrecorded > 0 && w.inFlight == 0 {
			// Their cuts did not fit the last commit, or it failed:
			// deliveries since make room, or it is tried again.
			w.mu.Unlock()
			if !w.commit(ctx, cl, nil) {
				_ = sleep(ctx, 100*time.Millisecond)
			}
			w.mu.Lock()
			continue
		}
		w.flush()
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

// addressed reports whether the worker delivers r: a record of the events
// topic may be addressed to one connector (a redrive) or one replay job
// (read back from an archive) by its firehose.connector header. An
// archive job's worker delivers only the records addressed to it.
func (w *Worker) addressed(r *kgo.Record) bool {
	to, ok := "", false
	if len(r.Headers) > 0 && dlq.Has(r, dlq.HeaderConnector) {
		to, ok = dlq.Header(r, dlq.HeaderConnector), true
	}
	if rp := w.o.Replay; rp != nil && rp.Archive {
		return ok && to == w.o.Connector.Group // the job's group is its address
	}
	return !ok || to == w.name
}

// decode decodes a record's value. A JSON body that will be spliced from
// the value needs only the fields for paths, keys and the filter, which
// schemas.DecodeHeader reads in a fraction of the full decoder's time; a
// value it does not take (a malformed one, one carrying firehose_metadata)
// goes through the full decoder, which says what is wrong.
func (w *Worker) decode(v []byte) (*schemas.Event, error) {
	if w.header && spliceable(v) {
		if e, ok := schemas.DecodeHeader(v, MetadataKey); ok {
			return e, nil
		}
	}
	return w.codec.Decode(v)
}

// checkColumns reports the first promoted column e's value does not fit.
func (w *Worker) checkColumns(e *schemas.Event) error {
	for _, c := range w.o.Connector.Columns {
		if err := c.check(e); err != nil {
			return err
		}
	}
	return nil
}

// isJSON reports whether the topic's values are plain JSON events, which
// JSON bodies can copy as they are.
func isJSON(c schemas.Codec) bool {
	_, ok := c.(schemas.JSON)
	return ok
}
