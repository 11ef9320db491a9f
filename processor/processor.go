package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/filter"

	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/topology"
)

// Options configure a Processor.
type Options struct {
	// Config is the processor section, defaults filled (see Defaults).
	Config Config
	// Topology names the topics read and written.
	Topology topology.Config
	// Kafka holds the connection options (seeds, TLS, SASL).
	Kafka []kgo.Opt
	// ClientOpts are added to the main (transactional) client only, e.g.
	// metrics hooks, which must see one client each.
	ClientOpts []kgo.Opt
	Log        *slog.Logger
	// Beat, if set, is beaten at every round of the loop (liveness).
	Beat *heartbeat.Beat
	// In and Out are the codecs of the raw and events topics (see
	// app/codecs); nil builds them from the topology's encodings,
	// which cannot be Schema Registry ones.
	In, Out schemas.Codec
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ShutdownTimeout bounds leaving the group on stop (default
	// kafkaclient.DefaultShutdownTimeout); the transaction under way gets at
	// most 10 s of it to commit.
	ShutdownTimeout time.Duration
	// beforeEnd, if set, runs after a transaction's records are produced
	// and before it is committed; tests use it to crash at that point.
	beforeEnd func(ctx context.Context) error
	// maxPoll bounds the records of one transaction; default 10000.
	maxPoll int
}

// Stats are running totals since start, counted when a transaction
// commits. All fields are safe to read concurrently.
type Stats struct {
	In, Emitted, Filtered, Deduplicated, DeadLettered, Masked, Transactions, Aborts atomic.Int64
	// Coalesced counts profile changes taken into profiles (stale ones
	// count as Deduplicated); Profiles is how many profiles this process
	// holds, after its last commit.
	Coalesced, Profiles atomic.Int64
	// HeadersDropped counts the producers' headers not carried to their
	// events (over the bounds, or trace context that is not W3C's), as
	// records are processed: a transaction that aborts counts its own
	// again when its records come again.
	HeadersDropped atomic.Int64
}

// Processor consumes the raw topic in a consumer group and produces to the
// events and DLQ topics in transactions that include the consumed offsets.
type Processor struct {
	o      Options
	pipe   *Pipeline
	log    *slog.Logger
	stats  Stats
	ready  atomic.Bool
	filter *FilterStage
	dedupe *Deduper
	// state reads and writes the stateful stages' state (dedupe, profiles).
	state  *stateStore
	enrich *Enricher
	masked atomic.Int64
	// profiles, when set, emits on ticks: nextCoalesce and nextRest are
	// the next ones, on multiples of their intervals.
	profiles               *Profiles
	nextCoalesce, nextRest time.Time
}

// New checks the options and builds the pipeline; it does no I/O.
func New(o Options) (*Processor, error) {
	cfg := o.Config
	in, out := o.In, o.Out
	var err error
	if in == nil {
		if in, err = schemas.RecordCodecFor(o.Topology.Raw.Encoding); err != nil {
			return nil, fmt.Errorf("topology.raw.encoding: %w", err)
		}
	}
	if out == nil {
		if out, err = schemas.CodecFor(o.Topology.Events.Encoding); err != nil {
			return nil, fmt.Errorf("topology.events.encoding: %w", err)
		}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.maxPoll == 0 {
		o.maxPoll = 10000
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = kafkaclient.DefaultShutdownTimeout
	}
	p := &Processor{o: o, log: o.Log.With("component", "processor")}
	pc := cfg

	// Filter first (cheapest, and dropped events need no dedupe state),
	// then dedupe, enrich, and mask last so nothing before it needs to
	// see through masks and nothing after it can see past them.
	//
	// Profiles comes before them all: it takes profile changes out of
	// the stream, and the events it emits go through filter, enrich and
	// mask (emitStages) like any other.
	var stages, emitStages []Stage
	if pc.Profiles.Enabled() {
		if p.profiles, err = NewProfiles(pc.Profiles, o.Topology.State.Name, o.Now, p.log); err != nil {
			return nil, err
		}
		stages = append(stages, p.profiles)
	}
	f, err := filter.Compile(pc.Filter)
	if err != nil {
		return nil, fmt.Errorf("processor.filter: %w", err)
	}
	if !f.Empty() {
		p.filter = &FilterStage{F: f}
		stages = append(stages, p.filter)
		emitStages = append(emitStages, p.filter)
	}
	if pc.Dedupe.IsEnabled() {
		p.dedupe = NewDeduper(o.Topology.State.Name, o.Topology.DLQ.Name, pc.Dedupe.TTL, o.Kafka, o.Now, p.log)
		stages = append(stages, p.dedupe)
	}
	var stateful []stateStage
	if p.dedupe != nil {
		stateful = append(stateful, p.dedupe)
	}
	if p.profiles != nil {
		stateful = append(stateful, p.profiles)
	}
	p.state = newStateStore(o.Topology.State.Name, o.Kafka, stateful...)
	if p.enrich, err = NewEnricher(pc.Enrich, o.Now); err != nil {
		return nil, err
	}
	if !p.enrich.Empty() || pc.Enrich.Topic != "" {
		stages = append(stages, p.enrich)
		emitStages = append(emitStages, p.enrich)
	}
	m, err := NewMasker(pc.Mask)
	if err != nil {
		return nil, fmt.Errorf("processor.mask: %w", err)
	}
	if m.rules > 0 {
		m.Masked = func(n int) { p.masked.Add(int64(n)) }
		stages = append(stages, m)
		emitStages = append(emitStages, m)
	}
	p.pipe = &Pipeline{
		In: in, Out: out,
		EventsTopic:    o.Topology.Events.Name,
		DLQTopic:       o.Topology.DLQ.Name,
		DLQMaxBytes:    o.Topology.DLQ.MaxRecordBytes(),
		EventsMaxBytes: o.Topology.Events.MaxRecordBytes(),
		HeadersDropped: &p.stats.HeadersDropped,
		Headers:        pc.Headers,
		MaxEventBytes:  int(pc.MaxEventBytes),
		Stages:         stages,
		EmitStages:     emitStages,
		Now:            o.Now,
	}
	return p, nil
}

// statePartitioner sends state records to the partition they name (the
// raw partition whose state they hold) and keys everything else as Kafka
// does, so one resource always lands in one partition.
type statePartitioner struct {
	state string
	keyed kgo.Partitioner
}

func (s statePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == s.state {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return s.keyed.ForTopic(t)
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// Ready reports whether the processor has joined its group and been
// assigned partitions.
func (p *Processor) Ready() bool { return p.ready.Load() }

// Run processes until ctx ends or a fatal error. On ctx end it finishes the
// transaction under way (commit within 10 s), leaves the group and
// returns nil.
func (p *Processor) Run(ctx context.Context) error {
	cfg, o := p.o.Config, p.o
	if t := cfg.Enrich.Topic; t != "" {
		// Reference data is read before the first event, so early events
		// are enriched like later ones.
		ready := make(chan struct{})
		refCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.enrich.Follow(refCtx, p.o.Kafka, t, p.log, ready); err != nil {
				p.log.Error("reference topic reader stopped", "topic", t, "err", err)
			}
		}()
		defer func() { cancel(); wg.Wait() }()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	sess, err := kgo.NewGroupTransactSession(p.clientOpts()...)
	if err != nil {
		return fmt.Errorf("processor: create client: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.ShutdownTimeout)
		defer cancel()
		kafkaclient.CloseWithin(cctx, sess.Close, p.log)
	}()
	p.log.Info("processor started", "from", o.Topology.Raw.Name, "to", o.Topology.Events.Name, "group", cfg.Group, "transactional_id", cfg.TransactionalID)

	var backoff time.Duration
	if p.profiles != nil {
		now := p.o.Now()
		p.nextCoalesce = nextTick(now, cfg.Profiles.CoalesceInterval)
		p.nextRest = nextTick(now, cfg.Profiles.RestInterval)
	}
	for {
		p.o.Beat.Beat()
		// An idle loop still comes round, every few seconds: its
		// heartbeat tells idle from stuck.
		pollCtx, cancel := context.WithTimeout(ctx, idlePoll)
		if p.profiles != nil {
			// Wake for the next tick even when no records come, and at
			// least every 250 ms, so that a clock other than the wall
			// clock (Options.Now) is followed too.
			// Never less than minPoll: a poll whose context has
			// already ended returns no records, so when a
			// transaction takes longer than an interval, every
			// loop would tick and none would read the raw topic.
			wait := min(max(p.nextTickTime().Sub(p.o.Now()), minPoll), 250*time.Millisecond)
			cancel()
			pollCtx, cancel = context.WithTimeout(ctx, wait)
		}
		fetches := sess.PollRecords(pollCtx, p.o.maxPoll)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		tick := p.tickDue()
		if fetches.NumRecords() == 0 && !tick {
			continue
		}
		// Schemas the registry has to tell first; an outage waits here,
		// before the transaction, rather than dead-letter.
		if err := schemas.Resolve(ctx, p.pipe.In, kafkaclient.Values(fetches)); err != nil {
			return nil // ctx ended; the records come again after a restart
		}
		err := p.transact(ctx, sess, fetches, tick)
		var se *stateError
		stateErr := errors.As(err, &se)
		if err == nil || stateErr {
			recycle(fetches)
		}
		if stateErr {
			// The transaction was aborted and the session rewound to
			// the committed offsets: the records come again once the
			// state can be read. A broker restarting or a process out
			// of file descriptors must not end the processor.
			backoff = min(max(2*backoff, 200*time.Millisecond), 10*time.Second)
			p.log.Warn("state not readable; retrying", "err", se.err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		backoff = 0
	}
}

// clientOpts are the options of the processor's transactional session:
// its group over the raw topic, its transactions, and its state kept with
// its partitions.
func (p *Processor) clientOpts() []kgo.Opt {
	cfg, o := p.o.Config, p.o
	opts := append([]kgo.Opt{}, p.o.Kafka...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(o.Topology.Raw.Name),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(60*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithPools(new(kafkaclient.Pools)), // see recycle
		kgo.ProducerBatchCompression(kafkaclient.Compression(o.Topology.Events.Compression)),
		kgo.ProducerBatchMaxBytes(kafkaclient.ProducerMaxBytes),
		kgo.RecordPartitioner(statePartitioner{state: o.Topology.State.Name, keyed: kgo.StickyKeyPartitioner(nil)}),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			p.log.Info("partitions assigned", "partitions", m)
			for _, part := range m[o.Topology.Raw.Name] {
				if err := p.state.Load(ctx, part); err != nil {
					// Ensure loads it again before its first records.
					p.log.Warn("state not loaded at assignment", "partition", part, "err", err)
				}
			}
			p.ready.Store(true)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			p.log.Info("partitions revoked", "partitions", m)
			p.state.Drop(m[o.Topology.Raw.Name])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			p.log.Warn("partitions lost", "partitions", m)
			p.ready.Store(false) // until the group assigns partitions again
			p.state.Drop(m[o.Topology.Raw.Name])
		}),
	)
	return append(opts, p.o.ClientOpts...)
}

// minPoll is the shortest a poll may wait: long enough that it returns
// the records the client has buffered.
const minPoll = 10 * time.Millisecond

// recycle gives a poll's records back to the client's pools once its
// transaction has ended (committed, or aborted with nothing left
// buffered): the events, dead letters and carried headers produced from
// them share their memory until then, and nothing kept longer does (the
// dedupe and profile state copy what they keep).
func recycle(fetches kgo.Fetches) {
	fetches.EachRecord(func(r *kgo.Record) { r.Recycle() })
}

// stateError is a failure to read dedupe state: transient, retried.
type stateError struct{ err error }

func (e *stateError) Error() string { return e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// transact runs one transaction over one poll's records, and the
// profiles stage's emissions when a tick is due.
func (p *Processor) transact(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, tick bool) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("processor: begin transaction: %w", err)
	}
	masked0, filtered0, dup0 := p.masked.Load(), p.filterDropped(), p.dedupeDropped()
	coalesced0, stale0 := p.profileCounts()
	tickAt := p.o.Now()
	outs, err := p.processParallel(ctx, fetches)
	if err == nil && tick {
		var emitted []*kgo.Record
		emitted, err = p.tick(ctx, tickAt)
		outs = append(outs, emitted)
	}
	if err != nil {
		_, _ = sess.End(context.WithoutCancel(ctx), kgo.TryAbort)
		p.state.End(false)
		return err
	}

	// Finishing a transaction that has begun must not be cut short by
	// shutdown: an abandoned transaction blocks read_committed readers
	// until it times out.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()

	var produceErr atomic.Pointer[error]
	for _, part := range outs {
		for _, r := range part {
			sess.Produce(endCtx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					produceErr.CompareAndSwap(nil, &err)
				}
			})
		}
	}
	try := kgo.TryCommit
	if err := sess.Client().Flush(endCtx); err != nil {
		try = kgo.TryAbort
	}
	if p.o.beforeEnd != nil {
		if err := p.o.beforeEnd(ctx); err != nil {
			return err
		}
	}
	if perr := produceErr.Load(); perr != nil {
		p.log.Error("produce failed; aborting transaction", "err", *perr)
		try = kgo.TryAbort
	}
	committed, err := sess.End(endCtx, try)
	p.stats.Transactions.Add(1)
	p.state.End(committed && err == nil)
	if committed && err == nil && tick {
		p.advanceTicks(tickAt)
	}
	if err != nil {
		return fmt.Errorf("processor: end transaction: %w", err)
	}
	if !committed {
		// A rebalance or a produce error: the records will be consumed
		// again by whoever owns their partitions now.
		p.stats.Aborts.Add(1)
		p.log.Info("transaction aborted; records will be processed again")
		return nil
	}
	for _, part := range outs {
		for _, r := range part {
			switch r.Topic {
			case p.pipe.DLQTopic:
				p.stats.DeadLettered.Add(1)
			case p.pipe.EventsTopic:
				p.stats.Emitted.Add(1)
			}
		}
	}
	p.stats.In.Add(int64(fetches.NumRecords()))
	p.stats.Masked.Add(p.masked.Load() - masked0)
	p.stats.Filtered.Add(p.filterDropped() - filtered0)
	p.stats.Deduplicated.Add(p.dedupeDropped() - dup0)
	if p.profiles != nil {
		coalesced, stale := p.profileCounts()
		p.stats.Coalesced.Add(coalesced - coalesced0)
		p.stats.Deduplicated.Add(stale - stale0)
		p.stats.Profiles.Store(int64(p.profiles.Count()))
	}
	return nil
}

func (p *Processor) filterDropped() int64 {
	if p.filter == nil {
		return 0
	}
	return p.filter.Dropped.Load()
}

func (p *Processor) dedupeDropped() int64 {
	if p.dedupe == nil {
		return 0
	}
	return p.dedupe.Dropped.Load()
}

// processParallel runs the pipeline over each partition's records, the
// partitions in parallel and each partition's records in order. Output i
// belongs to the i-th partition of fetches, in input order, followed by
// the partition's dedupe state records.
func (p *Processor) processParallel(ctx context.Context, fetches kgo.Fetches) ([][]*kgo.Record, error) {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, ftp)
		}
	})
	outs := make([][]*kgo.Record, len(parts))
	errs := make([]error, len(parts))
	work := func(i int) {
		recs := parts[i].Records
		if err := p.state.Ensure(ctx, parts[i].Partition); err != nil {
			errs[i] = &stateError{err}
			return
		}
		out := make([]*kgo.Record, 0, len(recs)+len(recs)/2)
		for _, r := range recs {
			if o, _ := p.pipe.Process(r); o != nil {
				out = append(out, o)
			}
		}
		outs[i] = p.state.Records(parts[i].Partition, out)
	}
	if len(parts) == 1 {
		work(0)
		return outs, errs[0]
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			work(i)
		}()
	}
	wg.Wait()
	return outs, errors.Join(errs...)
}

// nextTick is the first multiple of d after now.
func nextTick(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

func (p *Processor) nextTickTime() time.Time {
	if p.nextRest.Before(p.nextCoalesce) {
		return p.nextRest
	}
	return p.nextCoalesce
}

func (p *Processor) tickDue() bool {
	return p.profiles != nil && !p.o.Now().Before(p.nextTickTime())
}

// advanceTicks moves the ticks that were due at now past it, once their
// transaction committed; an aborted one is due again.
func (p *Processor) advanceTicks(now time.Time) {
	pc := p.o.Config.Profiles
	if !now.Before(p.nextCoalesce) {
		p.nextCoalesce = nextTick(now, pc.CoalesceInterval)
	}
	if !now.Before(p.nextRest) {
		p.nextRest = nextTick(now, pc.RestInterval)
	}
}

// tick runs the profiles stage's emissions due at now over every
// partition it holds, each event through the emit stages, and returns
// the records to produce: the events, then the profiles' state.
func (p *Processor) tick(ctx context.Context, now time.Time) ([]*kgo.Record, error) {
	coalesce, rest := !now.Before(p.nextCoalesce), !now.Before(p.nextRest)
	var out []*kgo.Record
	for _, part := range p.profiles.Partitions() {
		if err := p.state.Ensure(ctx, part); err != nil {
			return nil, &stateError{err}
		}
		for _, e := range p.profiles.Tick(part, now, coalesce, rest) {
			if r, _ := p.pipe.Emit(part, e); r != nil {
				out = append(out, r)
			}
		}
		out = p.state.Records(part, out)
	}
	return out, nil
}

func (p *Processor) profileCounts() (coalesced, stale int64) {
	if p.profiles == nil {
		return 0, 0
	}
	return p.profiles.Coalesced.Load(), p.profiles.Stale.Load()
}

// idlePoll bounds one poll, so that an idle loop comes round.
const idlePoll = 5 * time.Second
