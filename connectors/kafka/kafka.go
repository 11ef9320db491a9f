// Package kafka is the Kafka destination: every event becomes one record
// of a topic on another cluster, keyed by resource (a template), so
// per-resource order carries over. Azure Event Hubs is this destination
// through its Kafka endpoint: set event_hubs and the namespace, topic and
// connection string are all it needs.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the kafka section of a connector.
type Config struct {
	// Brokers of the destination cluster; with event_hubs they are
	// derived from the namespace.
	Brokers []string `yaml:"brokers"`
	// Topic is required; for Event Hubs, the event hub. It may be a
	// template, as key is ("leads.{{event_type}}"): each event goes to
	// the topic rendered for it (see connectors.Router).
	Topic string           `yaml:"topic"`
	TLS   kafkaclient.TLS  `yaml:"tls"`
	SASL  kafkaclient.SASL `yaml:"sasl"`
	// Key is the record key template; default {{resource_id}}, which
	// keeps each resource's events in one partition, in order.
	Key string `yaml:"key"`
	// DeliveryTimeout bounds how long the client tries one record before
	// the record fails and the runtime retries it; default 30s.
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// MaxRecordBytes is the largest record sent, key, value and headers
	// with their batch's framing: the destination topic's
	// max.message.bytes. Default 1 MiB (1,048,576), what Kafka and Event
	// Hubs (Standard) take; franz-go's own default, 1,000,012, would
	// refuse valid events near 1 MiB. A larger record is dead-lettered.
	MaxRecordBytes yamlconf.ByteSize `yaml:"max_record_bytes"`
	// EventHubs, when its namespace is set, targets Azure Event Hubs:
	// brokers <namespace>.servicebus.windows.net:9093, TLS, and SASL PLAIN
	// with user $ConnectionString and the connection string as password.
	EventHubs EventHubs `yaml:"event_hubs"`
}

// EventHubs configures the Azure Event Hubs shorthand.
type EventHubs struct {
	Namespace        string `yaml:"namespace"`         // e.g. my-namespace
	ConnectionString string `yaml:"connection_string"` // ${EVENTHUBS_CONNECTION_STRING}
}

// Defaults fills empty fields and expands the Event Hubs shorthand.
func (c *Config) Defaults() {
	if c.Key == "" {
		c.Key = "{{resource_id}}"
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.EventHubs.Namespace != "" {
		if len(c.Brokers) == 0 {
			c.Brokers = []string{c.EventHubs.Namespace + ".servicebus.windows.net:9093"}
		}
		c.TLS.Enabled = true
		c.SASL = kafkaclient.SASL{Mechanism: "PLAIN", Username: "$ConnectionString", Password: c.EventHubs.ConnectionString}
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, yamlconf.Errorf("brokers", "required (or event_hubs.namespace)"))
	}
	if _, err := connectors.TargetTemplate(c.Topic, CheckTopic); err != nil {
		errs = append(errs, yamlconf.Errorf("topic", "%v", err))
	}
	if c.MaxRecordBytes < 1024 || c.MaxRecordBytes > kafkaclient.ProducerMaxBytes {
		errs = append(errs, yamlconf.Errorf("max_record_bytes", "must be between 1KiB and %d, got %d", kafkaclient.ProducerMaxBytes, c.MaxRecordBytes))
	}
	if _, err := connectors.ParseTemplate(c.Key); err != nil {
		errs = append(errs, yamlconf.Errorf("key", "%v", err))
	}
	if c.EventHubs.Namespace != "" && !strings.HasPrefix(c.EventHubs.ConnectionString, "Endpoint=") {
		errs = append(errs, yamlconf.Errorf("event_hubs.connection_string", "must be an Event Hubs connection string (Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…)"))
	}
	return errors.Join(errs...)
}

// DefaultMaxRecordBytes is Config.MaxRecordBytes' default.
const DefaultMaxRecordBytes = 1 << 20

// Sink produces each event as a record.
type Sink struct {
	cfg   Config
	cl    *kgo.Client
	key   *connectors.Template
	topic *connectors.Template // nil: cfg.Topic for every record
	once  sync.Once
}

// New connects lazily; bad credentials show on the first delivery.
func New(cfg Config) (*Sink, error) {
	key, err := connectors.ParseTemplate(cfg.Key)
	if err != nil {
		return nil, err
	}
	opts, err := kafkaclient.Options(kafkaclient.Config{Brokers: cfg.Brokers, ClientID: "firehose-connector", TLS: cfg.TLS, SASL: cfg.SASL}, nil)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	topic, err := connectors.TargetTemplate(cfg.Topic, CheckTopic)
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &Sink{cfg: cfg, cl: cl, key: key, topic: topic}, nil
}

// KeyTemplate implements connectors.RecordSink.
func (s *Sink) KeyTemplate() *connectors.Template { return s.key }

// TargetTemplate implements connectors.Router.
func (s *Sink) TargetTemplate() *connectors.Template { return s.topic }

// CheckTarget implements connectors.Router.
func (s *Sink) CheckTarget(name string) error { return CheckTopic(name) }

// CheckTopic reports why name is not a legal Kafka topic name: 1 to 249
// letters, digits, '.', '_' and '-', and not "." or "..".
func CheckTopic(name string) error {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return fmt.Errorf("a Kafka topic name is 1 to 249 characters, and neither %q nor %q", ".", "..")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("a Kafka topic name holds only letters, digits, '.', '_' and '-', not %q", c)
		}
	}
	return nil
}

// Write implements connectors.RecordSink. The idempotent producer fails
// every record of a partition buffered after one that failed, so a key's
// later records are never accepted past a failed one.
func (s *Sink) Write(ctx context.Context, recs []*connectors.Record) {
	out := make([]*kgo.Record, len(recs))
	index := make(map[*kgo.Record]int, len(recs))
	for i, r := range recs {
		topic := r.Target
		if topic == "" {
			topic = s.cfg.Topic
		}
		out[i] = &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
		index[out[i]] = i
	}
	// Results come in the order records completed, not the order given.
	for _, res := range s.cl.ProduceSync(ctx, out...) {
		r := recs[index[res.Record]]
		r.Err = classify(res.Record.Topic, res.Err)
		if r.Target != "" && (errors.Is(res.Err, kerr.UnknownTopicOrPartition) || errors.Is(res.Err, kerr.UnknownTopicID)) {
			r.Err = connectors.Describe(connectors.Permanent(fmt.Errorf("%w: %w", connectors.ErrNoTarget, r.Err), ""), 0, kerr.UnknownTopicOrPartition.Message, "")
		}
	}
}

// classify marks what no retry can fix as permanent: a record over the
// topic's or the client's size limit, or one the broker calls invalid.
// Each error carries the broker's error name (MESSAGE_TOO_LARGE) as its
// code, and its class, for on_error rules.
func classify(topic string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("produce to topic %s: %w", topic, err)
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		class := ""
		if errors.Is(err, kgo.ErrRecordTimeout) {
			class = connectors.ClassTimeout
		}
		return connectors.Describe(connectors.Retryable(err, 0), 0, "", class)
	}
	class := connectors.ClassServer
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		class = connectors.ClassTooLarge
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.CorruptMessage):
		class = connectors.ClassRejected
	case errors.Is(err, kerr.ThrottlingQuotaExceeded):
		class = connectors.ClassThrottled
	case errors.Is(err, kerr.RequestTimedOut):
		class = connectors.ClassTimeout
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed), errors.Is(err, kerr.SaslAuthenticationFailed):
		class = connectors.ClassAuth
	}
	if !ke.Retriable && (class == connectors.ClassTooLarge || class == connectors.ClassRejected) {
		return connectors.Describe(connectors.Permanent(err, ke.Error()), 0, ke.Message, class)
	}
	return connectors.Describe(connectors.Retryable(err, 0), 0, ke.Message, class)
}

// Close implements connectors.RecordSink.
func (s *Sink) Close(context.Context) error {
	s.once.Do(s.cl.Close)
	return nil
}
