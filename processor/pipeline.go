// Package processor is the stage between the raw topic and the events
// topic: it decodes and validates each raw record, runs the configured
// stages, and produces the result (or a dead letter) inside a Kafka
// transaction together with the consumed offsets, so each raw record has
// exactly one outcome.
package processor

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/schemas"
)

// Stage is one step of the pipeline: it may change the event, or drop it
// by returning false. An error sends the raw record to the DLQ with the
// error's class (schemas.ClassOf, or "stage") and message.
type Stage interface {
	Name() string
	Apply(rec *kgo.Record, e *schemas.Event) (keep bool, err error)
}

// Pipeline turns one raw record into zero or one output records. It holds
// no Kafka client, so benchmarks and tests drive it directly. A Pipeline is
// used by one goroutine at a time per partition; stages that keep state key
// it by partition.
type Pipeline struct {
	In, Out     schemas.Codec
	EventsTopic string
	DLQTopic    string
	// DLQMaxBytes is the largest record the DLQ topic takes; a dead
	// letter over it has its value cut (dlq.Fit). 0: no limit.
	DLQMaxBytes   int
	MaxEventBytes int
	// EventsMaxBytes is the largest record the events topic takes: an
	// event whose key, value and headers outgrow it after enrichment
	// goes to the DLQ (class oversize) instead of failing its
	// transaction for ever. 0: no limit.
	EventsMaxBytes int
	Stages         []Stage
	// EmitStages are the stages that events the processor makes itself
	// go through (see Emit): filter, enrich and mask, not dedupe.
	EmitStages []Stage
	Now        func() time.Time
	// Headers are the globs of record headers carried to the event; nil
	// carries all. Headers named firehose.* (in any case) never are,
	// nor a traceparent or tracestate that is not W3C trace context,
	// nor more than MaxCarriedHeaders headers or MaxCarriedHeaderBytes.
	Headers []string

	// HeadersDropped, if set, counts the producer's headers not carried.
	HeadersDropped *atomic.Int64
}

// The bounds on a raw record's headers carried to its event; the rest
// are dropped (Pipeline.HeadersDropped counts them). W3C trace context
// takes at most 55 + 512 bytes of them.
const (
	MaxCarriedHeaders     = 32
	MaxCarriedHeaderBytes = 8 << 10
)

// Outcome tells what happened to one raw record.
type Outcome int

// The outcomes of Process.
const (
	Emitted Outcome = iota
	Dropped
	DeadLettered
)

// Process returns the record to produce for rec, and what became of it.
// Dropped records return nil.
func (p *Pipeline) Process(rec *kgo.Record) (*kgo.Record, Outcome) {
	if !tracing.Enabled() {
		return p.process(rec)
	}
	// A child of the producer's trace context; the event carries this
	// span's context on to the connectors.
	ctx, span := tracing.Tracer().Start(tracing.Extract(context.Background(), rec.Headers), "firehose.process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.source", rec.Topic), attribute.Int("messaging.kafka.partition", int(rec.Partition)),
			attribute.Int64("messaging.kafka.offset", rec.Offset), attribute.String("firehose.resource_id", string(rec.Key))))
	defer span.End()
	out, outcome := p.process(rec)
	switch outcome {
	case Emitted:
		tracing.Inject(ctx, &out.Headers)
	case Dropped:
		span.SetAttributes(attribute.String("firehose.outcome", "dropped"))
	case DeadLettered:
		span.SetStatus(codes.Error, dlq.Header(out, dlq.HeaderClass)+": "+dlq.Header(out, dlq.HeaderMessage))
	}
	return out, outcome
}

func (p *Pipeline) process(rec *kgo.Record) (*kgo.Record, Outcome) {
	if len(rec.Value) > p.MaxEventBytes {
		return p.dead(rec, schemas.ClassOversize, fmt.Sprintf("event is %d bytes, over the limit of %d (processor.max_event_bytes)", len(rec.Value), p.MaxEventBytes)), DeadLettered
	}
	e, err := p.In.Decode(rec.Value)
	if err != nil {
		return p.dead(rec, schemas.ClassOf(err), schemas.Detail(err)), DeadLettered
	}
	// The raw partition, and so dedupe state and order, follow the key.
	// A record keyed otherwise than by its resource would put one
	// resource in two partitions, past dedupe and out of order, once the
	// output is re-keyed by resource_id.
	if string(rec.Key) != e.ResourceID {
		msg := fmt.Sprintf("record key %q differs from resource_id %q: key each record by its resource_id, so that a resource's events stay in one partition, in order and de-duplicated", rec.Key, e.ResourceID)
		if rec.Key == nil {
			msg = fmt.Sprintf("record has no key: key each record by its resource_id (%q), so that a resource's events stay in one partition, in order and de-duplicated", e.ResourceID)
		}
		return p.dead(rec, schemas.ClassInvalid, msg), DeadLettered
	}
	return p.run(rec, e, p.Stages)
}

// Emit runs an event the processor made itself (a profile.updated, say)
// for a raw partition through EmitStages and encodes it. With no raw
// record behind the event, a dead letter (a filter rule with on_error:
// dlq) holds the event's JSON.
func (p *Pipeline) Emit(partition int32, e *schemas.Event) (*kgo.Record, Outcome) {
	val, err := schemas.JSON{}.Append(nil, e)
	if err != nil {
		return nil, Dropped
	}
	rec := &kgo.Record{Topic: p.EventsTopic, Partition: partition, Key: []byte(e.ResourceID), Value: val, Timestamp: p.Now()}
	return p.run(rec, e, p.EmitStages)
}

// encodeRoom is the room encode asks of the arena: an event that outgrows
// it (few do) has memory of its own.
const encodeRoom = 4 << 10

// encode returns e's record key (its resource id) and e encoded by p.Out,
// both in the arena: neither costs an allocation of its own, nor a copy
// out of a scratch buffer.
func (p *Pipeline) encode(e *schemas.Event) (key, val []byte, err error) {
	val = arenaAppend(encodeRoom, func(dst []byte) []byte {
		var enc []byte
		if enc, err = p.Out.Append(dst, e); err != nil {
			return dst // nothing kept
		}
		return enc
	})
	if err != nil {
		return nil, nil, err
	}
	key = arenaAppend(len(e.ResourceID), func(dst []byte) []byte { return append(dst, e.ResourceID...) })
	return key, val, nil
}

func (p *Pipeline) run(rec *kgo.Record, e *schemas.Event, stages []Stage) (*kgo.Record, Outcome) {
	for _, s := range stages {
		keep, err := s.Apply(rec, e)
		if err != nil {
			class := schemas.ClassOf(err)
			if class == "" {
				class = "stage"
			}
			return p.dead(rec, class, s.Name()+": "+schemas.Detail(err)), DeadLettered
		}
		if !keep {
			return nil, Dropped
		}
	}
	key, val, err := p.encode(e)
	if err != nil {
		return p.dead(rec, "encode", err.Error()), DeadLettered
	}
	headers := p.carried(rec.Headers)
	if size := recordSize(key, val, headers); p.EventsMaxBytes > 0 && size+dlq.RecordOverhead > p.EventsMaxBytes {
		return p.dead(rec, schemas.ClassOversize, fmt.Sprintf("the event is %d bytes with its key and headers after enrichment, over what the events topic takes (max.message.bytes %d)", size, p.EventsMaxBytes)), DeadLettered
	}
	out := newRecord()
	*out = kgo.Record{
		Topic:     p.EventsTopic,
		Key:       key,
		Value:     val,
		Headers:   headers,
		Timestamp: rec.Timestamp,
	}
	return out, Emitted
}

func recordSize(key, value []byte, hs []kgo.RecordHeader) int {
	n := len(key) + len(value)
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func (p *Pipeline) dropHeaders(n int) {
	if p.HeadersDropped != nil {
		p.HeadersDropped.Add(int64(n))
	}
}

// carried returns the headers of a raw record that go with its event: a
// producer's trace context (traceparent) and its own headers, by
// p.Headers, and never Firehose's (firehose.redrive, the DLQ reason).
func (p *Pipeline) carried(hs []kgo.RecordHeader) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	bytes := 0
	for i, h := range hs {
		if dlq.Reserved(h.Key) {
			continue
		}
		switch {
		case strings.EqualFold(h.Key, tracing.HeaderTraceparent) && !tracing.ValidTraceparent(h.Value),
			strings.EqualFold(h.Key, tracing.HeaderTracestate) && !tracing.ValidTracestate(h.Value):
			p.dropHeaders(1)
			continue
		}
		if len(out) == MaxCarriedHeaders || bytes+len(h.Key)+len(h.Value) > MaxCarriedHeaderBytes {
			p.dropHeaders(len(hs) - i)
			break
		}
		keep := len(p.Headers) == 0
		for _, g := range p.Headers {
			if ok, _ := path.Match(g, h.Key); ok {
				keep = true
				break
			}
		}
		if keep {
			out = append(out, h)
			bytes += len(h.Key) + len(h.Value)
		}
	}
	return out
}

func (p *Pipeline) dead(rec *kgo.Record, class, msg string) *kgo.Record {
	return dlq.Fit(dlq.Record(p.DLQTopic, rec, dlq.Reason{Stage: "processor", Class: class, Message: msg}, p.Now()), p.DLQMaxBytes)
}
