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

	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/schemas"
)

// Options configure a Processor.
type Options struct {
	Config config.Config
	// Kafka holds the connection options (seeds, TLS, SASL).
	Kafka []kgo.Opt
	Log   *slog.Logger
	// Stages run in order after decoding; nil runs none.
	Stages []Stage
	// beforeEnd, if set, runs after a transaction's records are produced
	// and before it is committed; tests use it to crash at that point.
	beforeEnd func(ctx context.Context) error
}

// Stats are running totals since start. All fields are safe to read
// concurrently.
type Stats struct {
	In, Emitted, Dropped, DeadLettered, Transactions, Aborts atomic.Int64
}

// Processor consumes the raw topic in a consumer group and produces to the
// events and DLQ topics in transactions that include the consumed offsets.
type Processor struct {
	o     Options
	pipe  *Pipeline
	log   *slog.Logger
	stats Stats
	ready atomic.Bool
}

// New checks the options and builds the pipeline; it does no I/O.
func New(o Options) (*Processor, error) {
	cfg := o.Config
	in, err := schemas.CodecFor(cfg.Topology.Raw.Encoding)
	if err != nil {
		return nil, fmt.Errorf("topology.raw.encoding: %w", err)
	}
	out, err := schemas.CodecFor(cfg.Topology.Events.Encoding)
	if err != nil {
		return nil, fmt.Errorf("topology.events.encoding: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Processor{
		o:   o,
		log: o.Log.With("component", "processor"),
		pipe: &Pipeline{
			In: in, Out: out,
			EventsTopic:   cfg.Topology.Events.Name,
			DLQTopic:      cfg.Topology.DLQ.Name,
			MaxEventBytes: int(cfg.Processor.MaxEventBytes),
			Stages:        o.Stages,
			Now:           time.Now,
		},
	}, nil
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
	cfg := p.o.Config
	opts := append([]kgo.Opt{}, p.o.Kafka...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Processor.Group),
		kgo.ConsumeTopics(cfg.Topology.Raw.Name),
		kgo.TransactionalID(cfg.Processor.TransactionalID),
		kgo.TransactionTimeout(60*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(8<<20),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			p.log.Info("partitions assigned", "partitions", m)
			p.ready.Store(true)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			p.log.Info("partitions revoked", "partitions", m)
		}),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("processor: create client: %w", err)
	}
	defer sess.Close()
	p.log.Info("processor started", "from", cfg.Topology.Raw.Name, "to", cfg.Topology.Events.Name, "group", cfg.Processor.Group, "transactional_id", cfg.Processor.TransactionalID)

	for {
		fetches := sess.PollRecords(ctx, 10000)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := p.transact(ctx, sess, fetches); err != nil {
			return err
		}
	}
}

// transact runs one transaction over one poll's records.
func (p *Processor) transact(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("processor: begin transaction: %w", err)
	}
	outs := p.processParallel(fetches)

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
	if p.o.beforeEnd != nil {
		if err := p.o.beforeEnd(ctx); err != nil {
			return err
		}
	}
	if err := sess.Client().Flush(endCtx); err != nil {
		try = kgo.TryAbort
	}
	if perr := produceErr.Load(); perr != nil {
		p.log.Error("produce failed; aborting transaction", "err", *perr)
		try = kgo.TryAbort
	}
	committed, err := sess.End(endCtx, try)
	p.stats.Transactions.Add(1)
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
			if r.Topic == p.pipe.DLQTopic {
				p.stats.DeadLettered.Add(1)
			} else {
				p.stats.Emitted.Add(1)
			}
		}
	}
	p.stats.In.Add(int64(fetches.NumRecords()))
	p.stats.Dropped.Add(int64(fetches.NumRecords()) - p.sumOutputs(outs))
	return nil
}

func (p *Processor) sumOutputs(outs [][]*kgo.Record) int64 {
	var n int64
	for _, o := range outs {
		n += int64(len(o))
	}
	return n
}

// processParallel runs the pipeline over each partition's records, the
// partitions in parallel and each partition's records in order. Output i
// belongs to the i-th partition of fetches, in input order.
func (p *Processor) processParallel(fetches kgo.Fetches) [][]*kgo.Record {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, ftp)
		}
	})
	outs := make([][]*kgo.Record, len(parts))
	work := func(i int) {
		recs := parts[i].Records
		out := make([]*kgo.Record, 0, len(recs))
		for _, r := range recs {
			if o, _ := p.pipe.Process(r); o != nil {
				out = append(out, o)
			}
		}
		outs[i] = out
	}
	if len(parts) == 1 {
		work(0)
		return outs
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
	return outs
}
