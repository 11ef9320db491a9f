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
	// Topic is required: a topic id or projects/<p>/topics/<t>. It may
	// be a template ("leads.{{event_type}}"): each event goes to the
	// topic rendered for it (see connectors.Router).
	Topic string `yaml:"topic"`
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
	if _, err := connectors.TargetTemplate(c.Topic, CheckTopic); err != nil {
		errs = append(errs, yamlconf.Errorf("topic", "%v", err))
	}
	if _, err := connectors.ParseTemplate(c.OrderingKey); err != nil {
		errs = append(errs, yamlconf.Errorf("ordering_key", "%v", err))
	}
	return errors.Join(errs...)
}

// Sink publishes events.
type Sink struct {
	cfg       Config
	client    *pubsub.Client
	key       *connectors.Template
	topic     *connectors.Template // nil: cfg.Topic for every message
	mu        sync.Mutex
	pubs      map[string]*publisher // by topic, as given
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
	topic, err := connectors.TargetTemplate(cfg.Topic, CheckTopic)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &Sink{cfg: cfg, client: client, key: key, topic: topic, pubs: map[string]*publisher{}}, nil
}

// publisher is one topic's publisher, with the Write calls using it: a
// publisher's Stop may not run beside its Flush, so a retired one (its
// topic does not exist) stops when its last user lets it go.
type publisher struct {
	*pubsub.Publisher
	topic   string // as given: the key of Sink.pubs
	users   int
	retired bool
}

// acquire returns the publisher of a topic ("": the configured one),
// created at its first message, for one Write call, which must release
// it.
func (s *Sink) acquire(topic string) *publisher {
	if topic == "" {
		topic = s.cfg.Topic
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pub, ok := s.pubs[topic]
	if !ok {
		p := s.client.Publisher(topic)
		p.EnableMessageOrdering = true
		p.PublishSettings.Timeout = s.cfg.PublishTimeout
		p.PublishSettings.DelayThreshold = 10 * time.Millisecond
		if s.cfg.batch.MaxEvents > 0 {
			p.PublishSettings.CountThreshold = min(s.cfg.batch.MaxEvents, 1000)
		}
		if s.cfg.batch.MaxBytes > 0 {
			p.PublishSettings.ByteThreshold = int(min(int64(s.cfg.batch.MaxBytes), 9_000_000))
		}
		pub = &publisher{Publisher: p, topic: topic}
		s.pubs[topic] = pub
	}
	pub.users++
	return pub
}

// release lets pub go; retire, also forgets it, so that its topic's next
// message makes a new one.
func (s *Sink) release(pub *publisher, retire bool) {
	s.mu.Lock()
	pub.users--
	if retire && !pub.retired {
		pub.retired = true
		if s.pubs[pub.topic] == pub {
			delete(s.pubs, pub.topic)
		}
	}
	stop := pub.retired && pub.users == 0
	s.mu.Unlock()
	if stop {
		pub.Stop()
	}
}

// KeyTemplate implements connectors.RecordSink.
func (s *Sink) KeyTemplate() *connectors.Template { return s.key }

// TargetTemplate implements connectors.Router.
func (s *Sink) TargetTemplate() *connectors.Template { return s.topic }

// CheckTarget implements connectors.Router.
func (s *Sink) CheckTarget(name string) error { return CheckTopic(name) }

// CheckTopic reports why name is not a Pub/Sub topic: an id, or
// projects/<project>/topics/<id>, whose id is 3 to 255 letters, digits and
// "-_.~+%", begins with a letter and not with "goog".
func CheckTopic(name string) error {
	id := name
	if strings.HasPrefix(name, "projects/") {
		parts := strings.Split(name, "/")
		if len(parts) != 4 || parts[1] == "" || parts[2] != "topics" {
			return fmt.Errorf("a Pub/Sub topic is an id or projects/<project>/topics/<id>")
		}
		id = parts[3]
	}
	if len(id) < 3 || len(id) > 255 || !(id[0] >= 'a' && id[0] <= 'z' || id[0] >= 'A' && id[0] <= 'Z') || strings.HasPrefix(strings.ToLower(id), "goog") {
		return fmt.Errorf("a Pub/Sub topic id is 3 to 255 characters, begins with a letter and not with goog")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~+%", c) >= 0) {
			return fmt.Errorf("a Pub/Sub topic id holds only letters, digits and -_.~+%%, not %q", c)
		}
	}
	return nil
}

// Write implements connectors.RecordSink. After a failure on an ordering
// key the publisher refuses that key's later messages (they come back as
// failed, to be written again); the key is resumed only once every
// message of this call has its outcome, so the runtime's retry sends the
// failed ones before anything newer.
func (s *Sink) Write(ctx context.Context, recs []*connectors.Record) {
	results := make([]*pubsub.PublishResult, len(recs))
	pubs := make([]*publisher, len(recs))
	used := map[string]*publisher{}
	gone := map[*publisher]bool{}
	defer func() {
		for _, pub := range used {
			s.release(pub, gone[pub])
		}
	}()
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
		if pubs[i] = used[r.Target]; pubs[i] == nil {
			pubs[i] = s.acquire(r.Target)
			used[r.Target] = pubs[i]
		}
		results[i] = pubs[i].Publish(ctx, &pubsub.Message{Data: r.Value, OrderingKey: string(r.Key), Attributes: attrs})
	}
	for _, pub := range used {
		pub.Flush()
	}
	type failure struct {
		pub *publisher
		key string
	}
	failed := map[failure]bool{}
	for i, res := range results {
		_, err := res.Get(ctx)
		recs[i].Err = nil
		if err == nil {
			continue
		}
		failed[failure{pubs[i], string(recs[i].Key)}] = true
		err = fmt.Errorf("publish to %s: %w", pubs[i].Publisher, err)
		recs[i].Err = classify(err)
		if recs[i].Target != "" && status.Code(err) == codes.NotFound {
			recs[i].Err = connectors.Describe(connectors.Permanent(fmt.Errorf("%w: %w", connectors.ErrNoTarget, recs[i].Err), ""), 0, codes.NotFound.String(), "")
			// A routed topic that does not exist keeps no publisher:
			// the runtime dead-letters its events for a while, then
			// asks again through a new one.
			gone[pubs[i]] = true
		}
	}
	for f := range failed {
		f.pub.ResumePublish(f.key)
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
		s.mu.Lock()
		for _, pub := range s.pubs {
			pub.Stop()
		}
		s.mu.Unlock()
		err = s.client.Close()
	})
	return err
}
