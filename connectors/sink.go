// Package connectors is the delivery runtime every destination shares: a
// consumer group over the events topic, batching by count, bytes and age,
// encoding, compression, delivery with retries, dead-lettering, and
// offset commits that never run ahead of what the destination acknowledged.
//
// A destination implements one of two contracts: Sink, for one encoded,
// compressed body per batch (files, S3, webhooks; see connectors/file), or
// RecordSink, for one record per event (Kafka, Kinesis, Pub/Sub).
package connectors

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// Sink delivers one encoded, compressed batch. Deliver returns nil only
// when the destination has durably accepted every byte; the runtime commits
// after that. It may be called again with the same batch (same ID, same
// Key, same Body) after a failure or a crash, so it must be idempotent or
// overwrite. Deliver is called concurrently: for an object store (a sink
// with a PathTemplate) with any batches, several of one partition among
// them; for other destinations never with two batches of one lane of a
// partition (see LanesPerPartition), so one resource's batches are
// delivered one after another, in order.
type Sink interface {
	Deliver(ctx context.Context, b *Batch) error
	// Close releases the sink's resources. It is safe to call twice.
	Close(ctx context.Context) error
}

// Destination is a Sink or a RecordSink.
type Destination interface {
	Close(ctx context.Context) error
}

// Batch is a run of consecutive events of one topic partition (and, when
// the connector has a path template, one rendered path).
type Batch struct {
	// ID names exactly this content: the same ID always means the same
	// records, in retries and after crashes (see BatchID).
	ID          string
	Connector   string
	Topic       string
	Partition   int32
	FirstOffset int64
	LastOffset  int64
	// Key is the object path for destinations that store objects: the
	// rendered path template followed by
	// <topic>+<partition>+<first offset, 20 digits><extension>, so that a
	// replay of the same offsets rewrites the same object.
	Key string
	// Body is the encoded and compressed payload; nil for a RecordSink.
	Body            []byte
	ContentType     string // e.g. application/x-ndjson
	ContentEncoding string // e.g. gzip; "" when not compressed
	// Records are the source records, in offset order; Events are the
	// decoded events, one per record. An event is nil where the runtime
	// did not keep it, because its record's value is the event as JSON,
	// written as it is (see AppendEvent); Times holds every event's
	// timestamp.
	Records []*kgo.Record
	Events  []*schemas.Event
	Times   []time.Time
	// Shaped, with a connector's transform, is each event as the
	// transform shaped it: one JSON object, what is written of it.
	Shaped [][]byte
	// SealedAt is when the batch was closed for delivery; it is the
	// delivered_at of every event in it.
	SealedAt time.Time
	// Replay is the replay job delivering the batch again (see
	// replay.go); "" for live delivery. Its events' firehose_metadata
	// name it, and destinations mark it (ReplayHeader).
	Replay string
	// Seq is the position in its batch of the first event of a run that
	// Each passes: event i of the run is the batch's Seq+i (its
	// firehose_metadata.sequence). 0 for a whole batch.
	Seq int

	// packs hold the batch's first events compressed, packed of them
	// (see pack.go); Records, Events and Shaped then hold the rest.
	// decode decodes a packed event again.
	packs  []pack
	packed int
	decode func([]byte) (*schemas.Event, error)
	raw    int // bytes of the events, before encoding

	// recs are the events as a RecordSink writes them, built once, and
	// recState each one's outcome so far (see deliverRecords).
	recs     []*Record
	recState []uint8

	lane    int         // the partition's lane, for destinations that keep order
	size    int         // bytes held, against max_buffered_bytes
	sending bool        // a delivery is under way
	cut     *pendingCut // an object's, delivered once recorded
	retryAt time.Time   // not delivered again before
}

// Bytes is the size of what was delivered: the body, or the records'
// values.
func (b *Batch) Bytes() int {
	if b.Body != nil {
		return len(b.Body)
	}
	n := 0
	for _, r := range b.recs {
		n += len(r.Value)
	}
	return n
}

// Lane is the lane of a record key: a resource's events always share one.
func Lane(key []byte) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % LanesPerPartition)
}

// EventHeaders returns the headers event i of b carries from its producer
// (the processor carries them from the raw record: a trace context such as
// traceparent, and the producer's own), without any named as Firehose's
// own are, in any case: firehose.*, and the headers record destinations
// write first (RecordHeaders). A reader that takes the last header of a
// name (Java's lastHeader) then reads Firehose's, never a forged one.
func EventHeaders(b *Batch, i int) []kgo.RecordHeader {
	if i >= len(b.Records) || b.Records[i] == nil {
		return nil
	}
	var out []kgo.RecordHeader
	for _, h := range b.Records[i].Headers {
		if !ReservedHeader(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// RecordHeaders are the headers a record destination writes first on
// every record, from the event.
var RecordHeaders = [...]string{"event_type", "account_id", "event_id"}

// ReservedHeader reports whether a header name is Firehose's, in any
// case: firehose.*, or one of RecordHeaders.
func ReservedHeader(name string) bool {
	if dlq.Reserved(name) {
		return true
	}
	for _, r := range RecordHeaders {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// BatchID returns the id of a batch of records of one topic partition, in
// offset order: <connector>-<topic>-<partition>-<first offset>-<last
// offset>-<16 hex digits of an FNV-1a hash of every offset in it>.
//
// A receiver may drop a batch whose id it has stored: the id names exactly
// one set of records. After a crash between a destination's acknowledgement
// and the commit, the next owner of the partition reads again from the
// committed offset and may cut different batches; those get other ids
// (a longer batch from the same first offset ends later, and a batch of
// the same range that holds other records, as one split by a path rendered
// from processing time can, hashes differently), so a receiver that
// de-duplicates by id loses nothing: at worst it stores some events twice,
// each copy identical.
func BatchID(connector string, recs []*kgo.Record) string {
	h := uint64(fnvOffset64)
	for _, r := range recs {
		h = hashOffset(h, r.Offset)
	}
	first, last := recs[0], recs[len(recs)-1]
	return batchID(connector, first.Topic, first.Partition, first.Offset, last.Offset, h)
}

// FNV-1a, 64 bits, over each offset's 8 bytes, big-endian: a batch's hash
// is built as its records arrive.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func hashOffset(h uint64, off int64) uint64 {
	for s := 56; s >= 0; s -= 8 {
		h ^= uint64(byte(uint64(off) >> s))
		h *= fnvPrime64
	}
	return h
}

func batchID(connector, topic string, partition int32, first, last int64, h uint64) string {
	return fmt.Sprintf("%s-%s-%d-%d-%d-%016x", connector, topic, partition, first, last, h)
}

// Error classes for destination errors. Wrap an error with Permanent or
// Retryable to tell the runtime what to do; an unwrapped error is retried.
type classified struct {
	err        error
	permanent  bool
	retryAfter time.Duration
	response   string
	// What on_error rules match besides the class: see Describe.
	status int
	code   string
	class  string
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Permanent marks err as one that retrying cannot fix (a payload the
// destination rejects): the batch goes to the DLQ. response, if not empty,
// is the destination's answer and travels in the DLQ record's headers.
func Permanent(err error, response string) error {
	return &classified{err: err, permanent: true, response: response}
}

// Retryable marks err as temporary. after, when positive, is how long the
// destination asked to wait (Retry-After) before the next attempt.
func Retryable(err error, after time.Duration) error {
	return &classified{err: err, retryAfter: after}
}

// Describe adds what on_error rules match to an error made by Permanent
// or Retryable: the HTTP status of the destination's answer (0: none), the
// destination's own error code ("": none; a Kafka error name, an AWS error
// code, a gRPC status code) and the error's class (one of ErrorClasses;
// "": derived from the status or the error, see FailureOf). It returns err.
func Describe(err error, status int, code, class string) error {
	var c *classified
	if errors.As(err, &c) {
		c.status, c.code, c.class = status, code, class
	}
	return err
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var c *classified
	return errors.As(err, &c) && c.permanent
}

// RetryAfter returns the wait a Retryable error asked for, or 0.
func RetryAfter(err error) time.Duration { return retryAfter(err) }

func retryAfter(err error) time.Duration {
	var c *classified
	if errors.As(err, &c) {
		return c.retryAfter
	}
	return 0
}

// ResponseOf returns the destination's response a Permanent error carries
// (what the dead letter keeps), or "".
func ResponseOf(err error) string { return response(err) }

func response(err error) string {
	var c *classified
	if errors.As(err, &c) {
		return c.response
	}
	return ""
}
