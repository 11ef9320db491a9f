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
	"github.com/firehose/firehose/internal/config"
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
	// then the batch fails and the runtime retries it. Default 60s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`

	// options are extra client options, for tests.
	options []option.ClientOption
	// batch is the connector's batch bounds (SetBatch), which the
	// publisher's bundles follow.
	batch config.Batch
}

// SetBatch implements destinations' batch hook: the publisher bundles up
// to the connector's batch bounds, within Pub/Sub's limits of 1,000
// messages and 10 MB per publish call.
func (c *Config) SetBatch(b config.Batch) { c.batch = b }

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
		errs = append(errs, config.Errorf("project", "required"))
	}
	if c.Topic == "" {
		errs = append(errs, config.Errorf("topic", "required"))
	}
	if _, err := connectors.ParseTemplate(c.OrderingKey); err != nil {
		errs = append(errs, config.Errorf("ordering_key", "%v", err))
	}
	return errors.Join(errs...)
}

// Sink publishes events.
type Sink struct {
	client    *pubsub.Client
	pub       *pubsub.Publisher
	key       *connectors.Template
	closeOnce sync.Once
	acks      connectors.Acks
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

// Deliver implements connectors.Sink. After a failure on an ordering key
// the publisher pauses that key; the key is resumed only once every
// message of this attempt has an outcome, so the retry resends the failed
// messages (a suffix per key) before anything newer.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	acked := s.acks.For(b)
	type pending struct {
		i   int
		key string
		res *pubsub.PublishResult
	}
	var ps []pending
	for i, e := range b.Events {
		if acked[i] {
			continue
		}
		key := string(s.key.Render(nil, b.Topic, b.Partition, e.Timestamp, e))
		attrs := map[string]string{"event_type": e.EventType, "account_id": e.AccountID, "event_id": e.EventID}
		for _, h := range connectors.EventHeaders(b, i) {
			// Producer headers that Pub/Sub can hold as attributes:
			// keys up to 256 bytes not starting with "goog", values
			// of valid UTF-8 up to 1024 bytes; ours win on a clash.
			if _, ours := attrs[h.Key]; !ours && len(h.Key) <= 256 && !strings.HasPrefix(strings.ToLower(h.Key), "goog") && len(h.Value) <= 1024 && utf8.Valid(h.Value) {
				attrs[h.Key] = string(h.Value)
			}
		}
		res := s.pub.Publish(ctx, &pubsub.Message{
			Data:        connectors.AppendEvent(nil, b, i),
			OrderingKey: key,
			Attributes:  attrs,
		})
		ps = append(ps, pending{i, key, res})
	}
	s.pub.Flush()
	var first error
	failedKeys := map[string]bool{}
	for _, p := range ps {
		if _, err := p.res.Get(ctx); err != nil {
			failedKeys[p.key] = true
			if first == nil {
				first = err
			}
			continue
		}
		acked[p.i] = true
	}
	for k := range failedKeys {
		s.pub.ResumePublish(k)
	}
	if first == nil {
		s.acks.Done(b)
		return nil
	}
	err := fmt.Errorf("deliver batch %s to pubsub %s: %d ordering keys failed: %w", b.ID, s.pub, len(failedKeys), first)
	if errors.Is(first, pubsub.ErrOversizedMessage) || status.Code(first) == codes.InvalidArgument {
		return connectors.Permanent(err, first.Error())
	}
	return connectors.Retryable(err, 0)
}

// Close implements connectors.Sink.
func (s *Sink) Close(context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.pub.Stop()
		err = s.client.Close()
	})
	return err
}
