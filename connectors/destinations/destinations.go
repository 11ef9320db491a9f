// Package destinations is the one list of every destination type: its
// name, how its config section is decoded and validated, and how its sink
// is built. Reading the map tells a newcomer every destination there is.
package destinations

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/file"
	httpdest "github.com/firehose/firehose/connectors/http"
	icebergdest "github.com/firehose/firehose/connectors/iceberg"
	kafkadest "github.com/firehose/firehose/connectors/kafka"
	kinesisdest "github.com/firehose/firehose/connectors/kinesis"
	pubsubdest "github.com/firehose/firehose/connectors/pubsub"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/transform"
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
	Batch connectors.Bounds
	// Compression is the type's default compression; empty means gzip.
	Compression string
	// Records: one record per event, as JSON; the connector takes no
	// encoding, compression or avro_codec.
	Records bool
	// Objects: one object per batch in a store (file, s3), which may be
	// Parquet.
	Objects bool
	// Table: one Parquet data file per batch, committed to a table
	// (iceberg); the encoding is parquet, and paths come from the event's
	// time.
	Table bool
	// Errors is what the type's errors carry, which on_error rules may
	// match.
	Errors connectors.ErrorSources
}

// Default batch bounds: object stores want few large objects, webhooks
// small, frequent requests.
var (
	objectBatch  = connectors.Bounds{MaxEvents: 100000, MaxBytes: 5_000_000, MaxAge: 5 * time.Minute}
	webhookBatch = connectors.Bounds{MaxEvents: 100, MaxBytes: 1_000_000, MaxAge: 30 * time.Second}
	recordBatch  = connectors.Bounds{MaxEvents: 500, MaxBytes: 5_000_000, MaxAge: time.Second}
	// A table wants large data files (query engines plan and open one
	// task per file): as large as the default max_buffered_bytes lets
	// a batch be.
	tableBatch = connectors.Bounds{MaxEvents: 1_000_000, MaxBytes: 64 << 20, MaxAge: 5 * time.Minute}
)

// What the types' errors carry, for on_error.
var (
	// network is every class a destination reached over a network has.
	network = []string{connectors.ClassTimeout, connectors.ClassThrottled, connectors.ClassConnection, connectors.ClassServer,
		connectors.ClassTooLarge, connectors.ClassAuth, connectors.ClassRejected}
	httpErrors   = connectors.ErrorSources{Status: true, Classes: network}
	awsErrors    = connectors.ErrorSources{Status: true, Codes: true, Classes: network}
	recordErrors = connectors.ErrorSources{Codes: true, Classes: network}
	// A file's: a name the file system refuses, or an error to retry.
	fileErrors = connectors.ErrorSources{Classes: []string{connectors.ClassRejected}}
)

// All is every destination, by the type name used in config.
var All = map[string]Destination{
	"file": {
		Doc:    "local directory; one file per batch, written atomically",
		Decode: decoder[file.Config](),
		New: func(_ context.Context, s any) (connectors.Destination, error) {
			return file.New(*s.(*file.Config))
		},
		Batch:   objectBatch,
		Objects: true,
		Errors:  fileErrors,
	},
	"s3": {
		Doc:    "Amazon S3 or an S3-compatible store; one object per batch, keyed by topic, partition and first offset",
		Decode: decoder[s3dest.Config](),
		New: func(ctx context.Context, s any) (connectors.Destination, error) {
			return s3dest.New(ctx, *s.(*s3dest.Config))
		},
		Batch:   objectBatch,
		Objects: true,
		Errors:  awsErrors,
	},
	"iceberg": {
		Doc:    "an Apache Iceberg table (SQL, REST or Glue catalog); one Parquet data file per batch, committed exactly once with the Kafka offsets in each snapshot",
		Decode: decoder[icebergdest.Config](),
		New: func(ctx context.Context, s any) (connectors.Destination, error) {
			return icebergdest.New(ctx, *s.(*icebergdest.Config), nil)
		},
		Batch:   tableBatch,
		Objects: true,
		Table:   true,
		Errors:  awsErrors,
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
		Errors:      recordErrors,
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
		Errors:      awsErrors,
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
		Errors:      recordErrors,
	},
	"http": {
		Doc:    "HTTP webhook; one request per batch, retried on 408, 429 and 5xx",
		Decode: decoder[httpdest.Config](),
		New: func(_ context.Context, s any) (connectors.Destination, error) {
			return httpdest.New(*s.(*httpdest.Config)), nil
		},
		Batch:       webhookBatch,
		Compression: "none",
		Errors:      httpErrors,
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
		if err := yamlconf.Decode(n, "", cfg); err != nil {
			return nil, err
		}
		cfg.Defaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return cfg, nil
	}
}

// Types lists the known destination types, sorted.
func Types() []string {
	out := slices.Collect(maps.Keys(All))
	slices.Sort(out)
	return out
}

// Defaults fills the settings c's destination type defaults differently
// from other connectors (batch bounds, compression); it runs before
// c.Defaults. A type that writes one record per event takes no
// encoding, compression or avro_codec: one set is reported, with a path
// relative to the connector.
func Defaults(c *connectors.Config) error {
	d, ok := All[c.Type]
	if !ok {
		return nil // Decode reports it
	}
	var v yamlconf.Problems
	if d.Records {
		for _, f := range []struct{ key, value string }{{"encoding", c.Encoding}, {"compression", c.Compression}, {"avro_codec", c.AvroCodec}} {
			if f.value != "" {
				v.Add(f.key, "a %s connector writes one record per event, as JSON: it takes no %s (remove it)", c.Type, f.key)
			}
		}
	}
	if d.Table {
		switch {
		case c.Encoding == "":
			c.Encoding = "parquet"
		case c.Encoding != "parquet":
			v.Add("encoding", "an %s table's data files are Parquet: leave encoding out or set parquet, not %s", c.Type, c.Encoding)
		}
		if c.TimeSource == "processing" {
			v.Add("time_source", "an %s table partitions by the event's timestamp: time_source must be event", c.Type)
		}
	}
	if c.Encoding == "parquet" && !d.Objects && !d.Records {
		v.Add("encoding", "parquet is written by the object destinations (file, s3): a %s connector takes ndjson, json or avro", c.Type)
	}
	v.Join("on_error", d.Errors.Check(c.OnError))
	c.Batch.Fill(d.Batch)
	if c.Compression == "" && c.Encoding != "avro" && c.Encoding != "parquet" {
		c.Compression = d.Compression
	}
	return v.Err()
}

// Decode decodes and validates the section of c named after its type
// into c.Destination, and reports any other section; paths are relative
// to the connector.
func Decode(c *connectors.Config) error {
	var v yamlconf.Problems
	v.Join("", c.UnknownSections())
	if c.Type == "" {
		return v.Err() // c.Validate reports a missing type
	}
	d, ok := All[c.Type]
	if !ok {
		msg := fmt.Sprintf("unknown destination type %q (known: %s)", c.Type, strings.Join(Types(), ", "))
		if s := yamlconf.Closest(c.Type, Types()); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		v.Add("type", "%s", msg)
		return v.Err()
	}
	n, ok := c.Rest[c.Type]
	if !ok {
		n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	dest, err := d.Decode(&n)
	v.Join(c.Type, err)
	c.Destination = dest
	if ct, ok := dest.(interface {
		CheckTransform(*transform.Transform) error
	}); ok && err == nil {
		if tr, terr := transform.Compile(c.Transform); terr == nil { // else Validate reports it
			if err := ct.CheckTransform(tr); err != nil {
				v.Add("transform", "%v", err)
			}
		}
	}
	return v.Err()
}

// NewSink builds the sink of a loaded connector.
func NewSink(ctx context.Context, c connectors.Config) (connectors.Destination, error) {
	d, ok := All[c.Type]
	if !ok {
		return nil, fmt.Errorf("connector %s: unknown destination type %q", c.Name, c.Type)
	}
	if c.Destination == nil {
		return nil, errors.New("connector " + c.Name + ": destination settings were not decoded; decode them with destinations.Decode")
	}
	if b, ok := c.Destination.(interface{ SetBatch(connectors.Bounds) }); ok {
		b.SetBatch(c.Batch) // a client that bundles follows the connector's bounds
	}
	return d.New(ctx, c.Destination)
}
