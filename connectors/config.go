package connectors

import (
	"time"

	"github.com/firehose/firehose/connectors/spec"
	"github.com/firehose/firehose/filter"
)

// Config is one connector's settings as the runtime takes them. The app
// builds it from the loaded config (destinations.RuntimeConfig); a zero
// field takes its default from package spec, as config does.
type Config struct {
	Name  string // required
	Topic string // the topic read; required
	Group string // the consumer group; required
	Batch Bounds
	// Encoding, Compression and AvroCodec shape a batch body (a Sink's);
	// names from spec's vocabularies.
	Encoding, Compression, AvroCodec string
	// ProcessingTime renders a path's {{year}}…{{minute}} from the time a
	// batch was opened instead of the event's timestamp.
	ProcessingTime bool
	Retry          RetryPolicy
	// StopOnPermanentError stops the connector at a refused batch or
	// record instead of dead-lettering it.
	StopOnPermanentError bool
	// MaxBufferedBytes caps open and undelivered batches.
	MaxBufferedBytes int64
	// MaxInFlight bounds the batches delivered at once.
	MaxInFlight int
	Filter      filter.Config
}

// Bounds bound a batch: it is sealed when any bound is reached.
type Bounds struct {
	MaxEvents int
	MaxBytes  int64 // before compression
	MaxAge    time.Duration
}

// defaults fills zero fields from spec.
func (c *Config) defaults() {
	if c.Batch.MaxEvents == 0 {
		c.Batch.MaxEvents = spec.DefaultBatchMaxEvents
	}
	if c.Batch.MaxBytes == 0 {
		c.Batch.MaxBytes = spec.DefaultBatchMaxBytes
	}
	if c.Batch.MaxAge == 0 {
		c.Batch.MaxAge = spec.DefaultBatchMaxAge
	}
	if c.Encoding == "" {
		c.Encoding = spec.DefaultEncoding
	}
	if c.Compression == "" {
		c.Compression = spec.DefaultCompression
	}
	if c.AvroCodec == "" {
		c.AvroCodec = spec.DefaultAvroCodec
	}
	c.Retry.defaults()
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = spec.DefaultMaxBufferedBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = spec.DefaultMaxInFlight
	}
}
