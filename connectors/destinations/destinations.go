// Package destinations is the one list of every destination type: its
// name, how its config section is decoded and validated, and how its sink
// is built. Reading the map tells a newcomer every destination there is.
package destinations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/file"
	httpdest "github.com/firehose/firehose/connectors/http"
	kafkadest "github.com/firehose/firehose/connectors/kafka"
	kinesisdest "github.com/firehose/firehose/connectors/kinesis"
	pubsubdest "github.com/firehose/firehose/connectors/pubsub"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/internal/config"
)

// Destination describes one destination type.
type Destination struct {
	// Doc is a one-line description for --help and docs.
	Doc string
	// Decode decodes and validates the type's config section.
	Decode func(n *yaml.Node) (any, error)
	// New builds the sink from the decoded section: a connectors.Sink or,
	// with Records, a connectors.RecordSink.
	New func(ctx context.Context, settings any) (connectors.Destination, error)
	// Batch is the type's default batch bounds.
	Batch config.Batch
	// Compression is the type's default compression; empty means gzip.
	Compression string
	// Records: one record per event, as JSON; the connector takes no
	// encoding, compression or avro_codec.
	Records bool
}

// Default batch bounds: object stores want few large objects, webhooks
// small, frequent requests.
var (
	objectBatch  = config.Batch{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: 5 * time.Minute}
	webhookBatch = config.Batch{MaxEvents: 100, MaxBytes: 1_000_000, MaxAge: 30 * time.Second}
	recordBatch  = config.Batch{MaxEvents: 500, MaxBytes: 5_000_000, MaxAge: time.Second}
)

// All is every destination, by the type name used in config.
var All = map[string]Destination{
	"file": {
		Doc:    "local directory; one file per batch, written atomically",
		Decode: decoder[file.Config](),
		New: func(_ context.Context, s any) (connectors.Destination, error) {
			return file.New(*s.(*file.Config))
		},
		Batch: objectBatch,
	},
	"s3": {
		Doc:    "Amazon S3 or an S3-compatible store; one object per batch, keyed by topic, partition and first offset",
		Decode: decoder[s3dest.Config](),
		New: func(ctx context.Context, s any) (connectors.Destination, error) {
			return s3dest.New(ctx, *s.(*s3dest.Config))
		},
		Batch: objectBatch,
	},
	"kafka": {
		Doc:    "a topic of another Kafka cluster, or Azure Event Hubs through its Kafka endpoint; one record per event keyed by resource",
		Decode: decoder[kafkadest.Config](),
		New: func(_ context.Context, s any) (connectors.Destination, error) {
			return kafkadest.New(*s.(*kafkadest.Config))
		},
		Batch:       recordBatch,
		Compression: "none",
		Records:     true,
	},
	"kinesis": {
		Doc:    "Amazon Kinesis Data Streams; one record per event, partition key = resource, never two of a key in flight",
		Decode: decoder[kinesisdest.Config](),
		New: func(ctx context.Context, s any) (connectors.Destination, error) {
			return kinesisdest.New(ctx, *s.(*kinesisdest.Config))
		},
		Batch:       recordBatch,
		Compression: "none",
		Records:     true,
	},
	"pubsub": {
		Doc:    "Google Cloud Pub/Sub; one message per event, ordering key = resource",
		Decode: decoder[pubsubdest.Config](),
		New: func(ctx context.Context, s any) (connectors.Destination, error) {
			return pubsubdest.New(ctx, *s.(*pubsubdest.Config))
		},
		Batch:       recordBatch,
		Compression: "none",
		Records:     true,
	},
	"http": {
		Doc:    "HTTP webhook; one request per batch, retried on 408, 429 and 5xx",
		Decode: decoder[httpdest.Config](),
		New: func(_ context.Context, s any) (connectors.Destination, error) {
			return httpdest.New(*s.(*httpdest.Config)), nil
		},
		Batch:       webhookBatch,
		Compression: "none",
	},
}

// section is what every destination config implements.
type section interface {
	Defaults()
	Validate() error
}

// decoder returns a Decode for config type T: strict YAML decoding, then
// defaults, then validation.
func decoder[T any, PT interface {
	*T
	section
}]() func(n *yaml.Node) (any, error) {
	return func(n *yaml.Node) (any, error) {
		cfg := PT(new(T))
		if err := config.Decode(n, "", cfg); err != nil {
			return nil, err
		}
		cfg.Defaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return cfg, nil
	}
}

// Registry adapts All to config.Destinations.
type Registry struct{}

// Types implements config.Destinations.
func (Registry) Types() []string {
	var out []string
	for k := range All {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// BatchDefaults implements config.Destinations.
func (Registry) BatchDefaults(typ string) config.Batch { return All[typ].Batch }

// DefaultCompression implements config.Destinations.
func (Registry) DefaultCompression(typ string) string { return All[typ].Compression }

// Records implements config.Destinations.
func (Registry) Records(typ string) bool { return All[typ].Records }

// Decode implements config.Destinations.
func (Registry) Decode(typ string, n *yaml.Node) (any, error) {
	d, ok := All[typ]
	if !ok {
		return nil, fmt.Errorf("unknown destination type %q", typ)
	}
	return d.Decode(n)
}

// NewSink builds the sink of a loaded connector.
func NewSink(ctx context.Context, c config.Connector) (connectors.Destination, error) {
	d, ok := All[c.Type]
	if !ok {
		return nil, fmt.Errorf("connector %s: unknown destination type %q", c.Name, c.Type)
	}
	if c.Destination == nil {
		return nil, errors.New("connector " + c.Name + ": destination settings were not decoded; load the config with destinations.Registry")
	}
	if b, ok := c.Destination.(interface{ SetBatch(config.Batch) }); ok {
		b.SetBatch(c.Batch) // a client that bundles follows the connector's bounds
	}
	return d.New(ctx, c.Destination)
}

// RuntimeConfig is the runtime's config of a loaded connector.
func RuntimeConfig(c config.Connector) connectors.Config {
	return connectors.Config{
		Name:        c.Name,
		Topic:       c.Topic,
		Group:       c.Group,
		Batch:       connectors.Bounds{MaxEvents: c.Batch.MaxEvents, MaxBytes: int64(c.Batch.MaxBytes), MaxAge: c.Batch.MaxAge},
		Encoding:    c.Encoding,
		Compression: c.Compression,
		AvroCodec:   c.AvroCodec,
		// config validated time_source and on_permanent_error against
		// spec's vocabularies.
		ProcessingTime:       c.TimeSource == "processing",
		Retry:                connectors.RetryPolicy{MaxAttempts: c.Retry.MaxAttempts, Initial: c.Retry.InitialBackoff, Max: c.Retry.MaxBackoff},
		StopOnPermanentError: c.OnPermanentError == "stop",
		MaxBufferedBytes:     int64(c.MaxBufferedBytes),
		MaxInFlight:          c.MaxInFlight,
		Filter:               c.Filter,
	}
}
