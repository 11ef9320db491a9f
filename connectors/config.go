package connectors

import (
	"fmt"
	"math"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/transform"
)

// The vocabularies of a connector's settings, each in the order error
// messages list them. A test holds them to what the runtime builds.
var (
	// Encodings of a batch body.
	Encodings = []string{"ndjson", "json", "avro", "parquet"}
	// Compressions of a batch body.
	Compressions = []string{"gzip", "snappy", "lz4", "zstd", "none"}
	// AvroCodecs are the block codecs of Avro container files.
	AvroCodecs = []string{"deflate", "snappy", "null"}
	// TimeSources are where a path's {{year}}…{{minute}} come from.
	TimeSources = []string{"event", "processing"}
	// OnPermanentErrors are what a refused batch does.
	OnPermanentErrors = []string{"dlq", "stop"}
)

// Defaults of a connector's settings. Destination types may set the batch
// bounds and the compression first (see connectors/destinations).
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

// Config is one connector of the connectors section, in the one shape
// config decodes and the runtime runs: one delivery pipeline: a consumer group over the events
// topic that batches, encodes, compresses and delivers to one destination.
// Its destination settings sit under a key named after its type:
//
//   - name: archive
//     type: file
//     file: {dir: /var/lib/firehose/out}
type Config struct {
	// NotRun marks a connector this process does not run (config.Scope):
	// only its name, type, enabled, topic and group were read.
	NotRun      bool   `yaml:"-"`
	Name        string `yaml:"name"`        // required, unique; [a-z0-9_-]
	Type        string `yaml:"type"`        // destination type, e.g. file
	Enabled     *bool  `yaml:"enabled"`     // default true
	Topic       string `yaml:"topic"`       // default: topology.events.name
	Group       string `yaml:"group"`       // default firehose-connector-<name>
	Batch       Bounds `yaml:"batch"`       // when a batch is delivered
	Encoding    string `yaml:"encoding"`    // ndjson (default), json (one array), avro (object container file) or parquet (file and s3)
	Compression string `yaml:"compression"` // gzip (default; snappy for parquet, inside the file), snappy, lz4, zstd or none
	// AvroCodec is the block codec of Avro container files: deflate
	// (default), snappy or null. With encoding avro, compression is
	// usually none.
	AvroCodec string `yaml:"avro_codec"`
	// TimeSource is where {{year}}…{{minute}} of a path come from: event
	// (the event's timestamp, default) or processing (the time the batch
	// was opened).
	TimeSource string `yaml:"time_source"`
	// Retry bounds how a failing batch is retried.
	Retry RetryPolicy `yaml:"retry"`
	// OnPermanentError is what a batch the destination rejects does: dlq
	// (default: its events go to the DLQ and the partition goes on) or
	// stop (the connector stops, and nothing past it is committed).
	OnPermanentError string `yaml:"on_permanent_error"`
	// MaxBufferedBytes caps the bytes of open batches of this connector;
	// reaching it delivers the largest open batches at once. Default 64MiB.
	MaxBufferedBytes yamlconf.ByteSize `yaml:"max_buffered_bytes"`
	// MaxInFlight bounds the batches this connector delivers at once,
	// across its partitions (default 32). An object store may have
	// several of one partition in flight; a destination that keeps order
	// at most one per lane (8 lanes per partition, by key). InFlightAuto
	// (auto) adapts the requests in flight between 1 and
	// MaxInFlightLimit to the destination's answers (see window).
	MaxInFlight InFlight `yaml:"max_in_flight"`
	// MaxInFlightLimit bounds max_in_flight: auto (default 32).
	MaxInFlightLimit int `yaml:"max_in_flight_limit"`
	// OnError chooses what a failed delivery does, by status, class and
	// error code; the first rule that matches wins.
	OnError []ErrorRule `yaml:"on_error"`
	// RateLimit bounds what one process sends to the destination.
	RateLimit RateLimit `yaml:"rate_limit"`
	// Filter selects the events this connector delivers; same syntax as
	// the processor's.
	Filter filter.Config `yaml:"filter"`
	// Transform shapes the connector's copy of each event, after its
	// filter (JSON bodies and record destinations).
	Transform []transform.Step `yaml:"transform"`
	// Columns are typed Parquet columns promoted out of the events' JSON
	// (encoding parquet only).
	Columns []Column `yaml:"columns"`

	// Destination holds the decoded settings of the section named after
	// Type, as decoded by
	// connectors/destinations.
	Destination any `yaml:"-"`

	Rest map[string]yaml.Node `yaml:",inline"`
}

// IsEnabled reports whether the connector runs.
func (c Config) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// ProcessingTime reports whether a path's {{year}}…{{minute}} come from
// the time a batch was opened instead of the event's timestamp.
func (c Config) ProcessingTime() bool { return c.TimeSource == "processing" }

// StopsOnPermanentError reports whether a refused batch or record stops
// the connector instead of going to the DLQ.
func (c Config) StopsOnPermanentError() bool { return c.OnPermanentError == "stop" }

// Bounds bound a batch; it is delivered when any bound is reached.
type Bounds struct {
	MaxEvents int               `yaml:"max_events"` // default 10000
	MaxBytes  yamlconf.ByteSize `yaml:"max_bytes"`  // default 5MB, before compression
	MaxAge    time.Duration     `yaml:"max_age"`    // default 5m, from the first event in the batch
}

// Fill sets the bounds left at zero from d.
func (b *Bounds) Fill(d Bounds) {
	if b.MaxEvents == 0 {
		b.MaxEvents = d.MaxEvents
	}
	if b.MaxBytes == 0 {
		b.MaxBytes = d.MaxBytes
	}
	if b.MaxAge == 0 {
		b.MaxAge = d.MaxAge
	}
}

// RetryPolicy bounds the retries of one batch: exponential backoff with
// full jitter from InitialBackoff to MaxBackoff, MaxAttempts attempts in
// all; a destination's Retry-After, when longer, is honoured. Then the
// batch is dead-lettered.
type RetryPolicy struct {
	MaxAttempts    int           `yaml:"max_attempts"`    // default 10, the first attempt included
	InitialBackoff time.Duration `yaml:"initial_backoff"` // default 200ms
	MaxBackoff     time.Duration `yaml:"max_backoff"`     // default 30s
}

// Defaults fills the fields left empty: the one place a connector's
// defaults live, called by config at load and by the runtime for a Config
// built in code. A destination type's own defaults go in first.
func (c *Config) Defaults() {
	if c.Group == "" && c.Name != "" {
		c.Group = "firehose-connector-" + c.Name
	}
	c.Batch.Fill(Bounds{MaxEvents: DefaultBatchMaxEvents, MaxBytes: DefaultBatchMaxBytes, MaxAge: DefaultBatchMaxAge})
	if c.Encoding == "" {
		c.Encoding = DefaultEncoding
	}
	if c.Compression == "" {
		switch c.Encoding {
		case "avro":
			c.Compression = "none" // the container file compresses its blocks
		case "parquet":
			c.Compression = "snappy" // inside the file, per column chunk
		default:
			c.Compression = DefaultCompression
		}
	}
	if c.AvroCodec == "" {
		c.AvroCodec = DefaultAvroCodec
	}
	if c.TimeSource == "" {
		c.TimeSource = DefaultTimeSource
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = DefaultRetryMaxAttempts
	}
	if c.Retry.InitialBackoff == 0 {
		c.Retry.InitialBackoff = DefaultRetryInitial
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = DefaultRetryMax
	}
	if c.OnPermanentError == "" {
		c.OnPermanentError = DefaultOnPermanentError
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxInFlight == InFlightAuto && c.MaxInFlightLimit == 0 {
		c.MaxInFlightLimit = DefaultMaxInFlight
	}
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate reports every problem of the connector's own settings, with
// paths relative to it; its destination's section is checked where it is
// decoded (connectors/destinations).
func (c Config) Validate() error {
	var v yamlconf.Problems
	if !nameRe.MatchString(c.Name) {
		v.Add("name", "required: lower-case letters, digits, _ and -, got %q", c.Name)
	}
	if c.Type == "" {
		v.Add("type", "required")
	}
	if c.Batch.MaxEvents < 1 {
		v.Add("batch.max_events", "must be at least 1")
	}
	if c.Batch.MaxBytes < 1 {
		v.Add("batch.max_bytes", "must be at least 1")
	}
	if c.Batch.MaxAge < 10*time.Millisecond {
		v.Add("batch.max_age", "must be at least 10ms, got %s", c.Batch.MaxAge)
	}
	v.OneOf("encoding", c.Encoding, Encodings)
	v.OneOf("compression", c.Compression, Compressions)
	v.Join("filter", filter.Validate(c.Filter))
	v.Join("transform", transform.Validate(c.Transform))
	if tr, err := transform.Compile(c.Transform); err == nil && tr != nil {
		switch {
		case c.Encoding == "avro":
			if _, err := NewShapedAvro("null", tr); err != nil {
				v.Add("transform", "%v", err)
			}
		case c.Encoding == "parquet" && len(c.Columns) > 0:
			v.Add("columns", `with a transform, the file's columns are the transform's fields: make a typed one with set, such as {price: "float(metadata.price)"}`)
		case c.Encoding == "parquet":
			if _, err := NewShapedParquet("none", tr); err != nil {
				v.Add("transform", "%v", err)
			}
		}
	}
	v.OneOf("avro_codec", c.AvroCodec, AvroCodecs)
	v.OneOf("time_source", c.TimeSource, TimeSources)
	v.OneOf("on_permanent_error", c.OnPermanentError, OnPermanentErrors)
	if c.Retry.MaxAttempts < 1 {
		v.Add("retry.max_attempts", "must be at least 1")
	}
	if c.Retry.InitialBackoff <= 0 || c.Retry.MaxBackoff < c.Retry.InitialBackoff {
		v.Add("retry", "initial_backoff must be positive and max_backoff at least initial_backoff")
	}
	switch {
	case c.MaxInFlight == InFlightAuto:
		if c.MaxInFlightLimit < 1 || c.MaxInFlightLimit > MaxInFlightLimit {
			v.Add("max_in_flight_limit", "must be from 1 to %d, got %d", MaxInFlightLimit, c.MaxInFlightLimit)
		}
	case c.MaxInFlight < 1 || c.MaxInFlight > MaxInFlightLimit:
		v.Add("max_in_flight", "must be auto or from 1 to %d, got %d", MaxInFlightLimit, c.MaxInFlight)
	case c.MaxInFlightLimit != 0:
		v.Add("max_in_flight_limit", "bounds max_in_flight: auto; with max_in_flight %d, remove it", c.MaxInFlight)
	}
	v.Join("on_error", validErrorRules(c.OnError))
	for _, f := range []struct {
		key string
		v   float64
	}{{"events_per_second", c.RateLimit.EventsPerSecond}, {"requests_per_second", c.RateLimit.RequestsPerSecond}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			v.Add("rate_limit."+f.key, "must be a positive number, or 0 for no limit")
		}
	}
	if len(c.Columns) > 0 && c.Encoding != "parquet" {
		v.Add("columns", "are Parquet columns: set encoding: parquet")
	}
	v.Join("columns", validColumns(c.Columns))
	if c.MaxBufferedBytes < c.Batch.MaxBytes {
		v.Add("max_buffered_bytes", "must be at least batch.max_bytes (%d), got %d", int64(c.Batch.MaxBytes), int64(c.MaxBufferedBytes))
	}
	return v.Err()
}

// UnknownSections reports the keys of Rest other than the destination's
// own section (named after Type) as unknown fields.
func (c Config) UnknownSections() error {
	var v yamlconf.Problems
	known := append(yamlconf.Fields[Config](), c.Type)
	for k := range c.Rest {
		if k == c.Type {
			continue
		}
		msg := fmt.Sprintf("unknown field %q", k)
		if s := yamlconf.Closest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if c.Type == "" {
			msg += "; set type: " + k + " if this is the destination's section"
		}
		v.Add(k, "%s", msg)
	}
	return v.Err()
}
