// Package dlq builds dead-letter records. Every stage that gives up on a
// record sends it here with the reason in headers and the original bytes as
// the value, so an operator can read why and redrive it unchanged.
package dlq

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names on a dead-letter record.
const (
	HeaderStage           = "firehose.stage"            // "processor" or "connector:<name>"
	HeaderClass           = "firehose.error.class"      // e.g. decode, invalid, oversize, permanent
	HeaderMessage         = "firehose.error.message"    // human-readable reason
	HeaderTime            = "firehose.error.time"       // RFC 3339, when it was dead-lettered
	HeaderSourceTopic     = "firehose.source.topic"     // where the record was read
	HeaderSourcePartition = "firehose.source.partition" //
	HeaderSourceOffset    = "firehose.source.offset"    //
	HeaderResponse        = "firehose.destination.response"
	// HeaderValueSize and HeaderValueSHA256 are set when the value was
	// truncated to fit the dead-letter topic: the original value's length
	// in bytes and its SHA-256 (hex), so it can be found and checked.
	HeaderValueSize   = "firehose.value.size"
	HeaderValueSHA256 = "firehose.value.sha256"
	// HeaderHeadersDropped is set when the source record's own headers
	// were too many to keep: how many there were.
	HeaderHeadersDropped = "firehose.headers.dropped"

	// HeaderRedrive marks a record re-submitted from the DLQ by
	// `firehose dlq redrive`; its value is the DLQ partition:offset. The
	// processor lets it past dedupe: the operator asked for it again.
	HeaderRedrive = "firehose.redrive"
	// HeaderConnector on a record of the events topic addresses it to one
	// connector: the others, and the pull API, skip it.
	HeaderConnector = "firehose.connector"
)

// Reserved reports whether a header name is Firehose's own: firehose.*,
// in any case. A producer's header of such a name is never carried to an
// event or a destination, so no reader takes it for Firehose's.
func Reserved(name string) bool {
	return len(name) >= len("firehose.") && strings.EqualFold(name[:len("firehose.")], "firehose.")
}

// ConnectorStagePrefix starts the stage of a connector's dead letters.
const ConnectorStagePrefix = "connector:"

// ConnectorStage is the stage (HeaderStage) of a connector's dead letters,
// and the name of its Kafka client in metrics: "connector:<name>".
func ConnectorStage(name string) string { return ConnectorStagePrefix + name }

// reasonHeaders are the headers Record adds; Original removes them.
var reasonHeaders = map[string]bool{
	HeaderStage: true, HeaderClass: true, HeaderMessage: true, HeaderTime: true,
	HeaderSourceTopic: true, HeaderSourcePartition: true, HeaderSourceOffset: true,
	HeaderResponse: true, HeaderRedrive: true, HeaderConnector: true,
	HeaderValueSize: true, HeaderValueSHA256: true, HeaderHeadersDropped: true,
}

// Original returns the headers a dead-lettered record came with, without
// the reason.
func Original(r *kgo.Record) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range r.Headers {
		if !reasonHeaders[h.Key] {
			out = append(out, h)
		}
	}
	return out
}

// Has reports whether r carries a header named key.
func Has(r *kgo.Record, key string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

// maxMessage bounds the message header; a destination's error body can be
// large and the reason must not push the record over the broker's limit.
const maxMessage = 4096

// Reason says why a record is dead-lettered.
type Reason struct {
	Stage   string
	Class   string
	Message string
	Extra   []kgo.RecordHeader // more headers, e.g. the destination's response
}

// Record returns the dead-letter record for src: the same key and value,
// src's own headers first, then the reason. now is the time it is stamped.
func Record(topic string, src *kgo.Record, r Reason, now time.Time) *kgo.Record {
	msg := r.Message
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	h := make([]kgo.RecordHeader, 0, len(src.Headers)+7+len(r.Extra))
	h = append(h, src.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(r.Stage)},
		kgo.RecordHeader{Key: HeaderClass, Value: []byte(r.Class)},
		kgo.RecordHeader{Key: HeaderMessage, Value: []byte(msg)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
	)
	h = append(h, r.Extra...)
	return &kgo.Record{Topic: topic, Key: src.Key, Value: src.Value, Headers: h}
}

// RecordOverhead bounds what a record adds to its key, value and headers
// in a record batch: the batch header, the record's varints and the header
// lengths, with room to spare.
const RecordOverhead = 1024

// headerOverhead bounds the varints a header adds to its key and value.
const headerOverhead = 6

// Fit returns rec, or, when its key, value and headers would not fit in a
// record of maxBytes (the dead-letter topic's max.message.bytes), a copy
// whose value is cut to fit, with the original value's size and SHA-256
// in headers. A dead letter must always be writable: one that is not would
// abort the transaction that carries it, again and again, and stop its
// partition for good.
//
// Headers count with their length prefixes. When the source's own headers
// take more than half the limit (a producer may send megabytes of them),
// they are left out, and HeaderHeadersDropped says how many there were.
func Fit(rec *kgo.Record, maxBytes int) *kgo.Record {
	size, own := len(rec.Key)+len(rec.Value), 0
	for _, h := range rec.Headers {
		n := len(h.Key) + len(h.Value) + headerOverhead
		size += n
		if !reasonHeaders[h.Key] {
			own += n
		}
	}
	if maxBytes <= 0 || size+RecordOverhead <= maxBytes {
		return rec
	}
	out := *rec
	out.Headers = slices.Clip(rec.Headers)
	if own > maxBytes/2 {
		var kept []kgo.RecordHeader
		dropped := 0
		for _, h := range rec.Headers {
			if reasonHeaders[h.Key] {
				kept = append(kept, h)
			} else {
				dropped++
			}
		}
		out.Headers = append(kept, kgo.RecordHeader{Key: HeaderHeadersDropped, Value: strconv.AppendInt(nil, int64(dropped), 10)})
		size -= own - len(HeaderHeadersDropped) - 20 - headerOverhead
		if size+RecordOverhead <= maxBytes {
			return &out
		}
	}
	sum := sha256.Sum256(rec.Value)
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderValueSize, Value: strconv.AppendInt(nil, int64(len(rec.Value)), 10)},
		kgo.RecordHeader{Key: HeaderValueSHA256, Value: []byte(hex.EncodeToString(sum[:]))},
	)
	size += len(HeaderValueSize) + 20 + len(HeaderValueSHA256) + 64
	over := size + RecordOverhead - maxBytes
	cut := min(over, len(out.Value))
	out.Value = rec.Value[:len(rec.Value)-cut]
	// A key as large as the limit (no producer of events sends one, but
	// anyone can) is cut too; the value's hash still names the record.
	if over -= cut; over > 0 {
		out.Key = rec.Key[:max(len(rec.Key)-over, 0)]
	}
	return &out
}

// Header returns the value of the last header named key, or "".
func Header(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}
