// Package spec owns the vocabulary and the defaults of a connector's
// settings: the names config validation accepts are the ones the runtime
// implements (a test in package connectors holds them together), and each
// default is written here once, for config to fill and the runtime to
// fall back on. It imports nothing of Firehose, so both can ask it.
package spec

import "time"

// Vocabularies, each in the order error messages list them; the first is
// the default unless a Default below says otherwise.
var (
	// Encodings of a batch body.
	Encodings = []string{"ndjson", "json", "avro"}
	// Compressions of a batch body.
	Compressions = []string{"gzip", "snappy", "lz4", "zstd", "none"}
	// AvroCodecs are the block codecs of Avro container files.
	AvroCodecs = []string{"deflate", "snappy", "null"}
	// TimeSources are where a path's {{year}}…{{minute}} come from.
	TimeSources = []string{"event", "processing"}
	// OnPermanentError are what a refused batch does.
	OnPermanentError = []string{"dlq", "stop"}
)

// Defaults of a connector's settings. Destination types may override the
// batch bounds and the compression (see connectors/destinations).
const (
	DefaultEncoding         = "ndjson"
	DefaultCompression      = "gzip"
	DefaultAvroCodec        = "deflate"
	DefaultTimeSource       = "event"
	DefaultOnPermanentError = "dlq"

	DefaultBatchMaxEvents = 10000
	DefaultBatchMaxBytes  = 5_000_000
	DefaultBatchMaxAge    = 5 * time.Minute

	DefaultRetryMaxAttempts = 10
	DefaultRetryInitial     = 200 * time.Millisecond
	DefaultRetryMax         = 30 * time.Second

	// DefaultMaxBufferedBytes caps a connector's open and undelivered
	// batches.
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultMaxInFlight is how many batches a connector delivers at
	// once; MaxInFlightLimit the most it may be set to.
	DefaultMaxInFlight = 32
	MaxInFlightLimit   = 1024
)
