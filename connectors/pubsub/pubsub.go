// Package pubsub is the Google Cloud Pub/Sub destination: one message per
// event, with the resource id (a template) as ordering key, so each
// resource's events are delivered in order. Credentials are Application
// Default Credentials; PUBSUB_EMULATOR_HOST is honoured by the library.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the pubsub section of a connector.
type Config struct {
	Project string `yaml:"project"` // required
	Topic   string `yaml:"topic"`   // required: a topic id or projects/<p>/topics/<t>
	// OrderingKey is a template; default {{resource_id}}. Message
	// ordering must also be enabled on the subscription.
	OrderingKey string `yaml:"ordering_key"`
	// Endpoint overrides the service address (tests, private endpoints).
	Endpoint string `yaml:"endpoint"`
	// PublishTimeout bounds the client's own retries of one publish;
	// then the message fails and the runtime retries it. Default 60s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`

	// options are extra client options, for tests.
	options []option.ClientOption
	// batch is the connector's batch bounds (SetBatch), which the
	// publisher's bundles follow.
	batch connectors.Bounds
}

// SetBatch implements destinations' batch hook: the publisher bundles up
// to the connector's batch bounds, within Pub/Sub's limits of 1,000
// messages and 10 MB per publish call.
func (c *Config) SetBatch(b connectors.Bounds) { c.batch = b }

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.OrderingKey == "" {
		c.OrderingKey = "{{resource_id}}"
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 60 * time.Second
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.Project == "" {
		errs = append(errs, yamlconf.Errorf("project", "required"))
	}
	if c.Topic == "" {
		errs = append(errs, yamlconf.Errorf("topic", "required"))
	}
	if _, err := connectors.ParseTemplate(c.OrderingKey); err != nil {
		errs = append(errs, yamlconf.Errorf("ordering_key", "%v", err))
	}
	return errors.Join(errs...)
}

// Sink publishes events.
type Sink struct {
	client    *pubsub.Client
	pub       *pubsub.Publisher
	key       *connectors.Template
	closeOnce sync.Once
}

// New creates the client. The publisher's batching follows the
// connector's: a Firehose batch is published at once and flushed.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	key, err := connectors.ParseTemplate(cfg.OrderingKey)
	if err != nil {
		return nil, err
	}
	opts := cfg.options
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	client, err := pubsub.NewClient(ctx, cfg.Project, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub destination: %w", err)
	}
	pub := client.Publisher(cfg.Topic)
	pub.EnableMessageOrdering = true
	pub.PublishSettings.Timeout = cfg.PublishTimeout
	pub.PublishSettings.DelayThreshold = 10 * time.Millisecond
	if cfg.batch.MaxEvents > 0 {
		pub.PublishSettings.CountThreshold = min(cfg.batch.MaxEvents, 1000)
	}
	if cfg.batch.MaxBytes > 0 {
		pub.PublishSettings.ByteThreshold = int(min(int64(cfg.batch.MaxBytes), 9_000_000))
	}
	return &Sink{client: client, pub: pub, key: key}, nil
}

// KeyTemplate implements connectors.RecordSink.
func (s *Sink) KeyTemplate() *connectors.Template { return s.key }

// Write implements connectors.RecordSink. After a failure on an ordering
// key the publisher refuses that key's later messages (they come back as
// failed, to be written again); the key is resumed only once every
// message of this call has its outcome, so the runtime's retry sends the
// failed ones before anything newer.
func (s *Sink) Write(ctx context.Context, recs []*connectors.Record) {
	results := make([]*pubsub.PublishResult, len(recs))
	for i, r := range recs {
		attrs := make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			// Headers that Pub/Sub can hold as attributes: keys up to
			// 256 bytes not starting with "goog", values of valid
			// UTF-8 up to 1024 bytes; the first of a key wins, so
			// event_type, account_id and event_id are ours.
			if _, seen := attrs[h.Key]; !seen && len(h.Key) <= 256 && !strings.HasPrefix(strings.ToLower(h.Key), "goog") && len(h.Value) <= 1024 && utf8.Valid(h.Value) {
				attrs[h.Key] = string(h.Value)
			}
		}
		results[i] = s.pub.Publish(ctx, &pubsub.Message{Data: r.Value, OrderingKey: string(r.Key), Attributes: attrs})
	}
	s.pub.Flush()
	failed := map[string]bool{}
	for i, res := range results {
		_, err := res.Get(ctx)
		recs[i].Err = nil
		if err == nil {
			continue
		}
		failed[string(recs[i].Key)] = true
		err = fmt.Errorf("publish to %s: %w", s.pub, err)
		recs[i].Err = classify(err)
	}
	for k := range failed {
		s.pub.ResumePublish(k)
	}
}

// classify marks a message Pub/Sub can never take (over its size limit,
// or an invalid argument) permanent; each error carries its gRPC code's
// name (InvalidArgument) and its class, for on_error rules.
func classify(err error) error {
	code := status.Code(err)
	class := ""
	switch code {
	case codes.ResourceExhausted:
		class = connectors.ClassThrottled
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
		class = connectors.ClassRejected
	case codes.Unavailable, codes.Internal, codes.Aborted:
		class = connectors.ClassServer
	case codes.DeadlineExceeded:
		class = connectors.ClassTimeout
	case codes.PermissionDenied, codes.Unauthenticated:
		class = connectors.ClassAuth
	}
	name := ""
	if code != codes.Unknown && code != codes.OK {
		name = code.String()
	}
	if errors.Is(err, pubsub.ErrOversizedMessage) {
		return connectors.Describe(connectors.Permanent(err, ""), 0, name, connectors.ClassTooLarge)
	}
	if code == codes.InvalidArgument {
		return connectors.Describe(connectors.Permanent(err, ""), 0, name, class)
	}
	return connectors.Describe(connectors.Retryable(err, 0), 0, name, class)
}

// Close implements connectors.RecordSink.
func (s *Sink) Close(context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.pub.Stop()
		err = s.client.Close()
	})
	return err
}
