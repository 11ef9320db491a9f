package topology

import (
	"maps"
	"regexp"
	"slices"
	"strconv"

	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the topology section: the four topics and how they are
// created.
type Config struct {
	Raw    Topic `yaml:"raw"`    // default events.raw
	Events Topic `yaml:"events"` // default events
	DLQ    Topic `yaml:"dlq"`    // default events.dlq
	State  Topic `yaml:"state"`  // default firehose.state, compacted
}

// Topic is one topic's spec. Configs are Kafka topic configs; the defaults
// (retention.ms=259200000 and cleanup.policy) are merged under them.
type Topic struct {
	Name              string `yaml:"name"`
	Partitions        int32  `yaml:"partitions"`         // default 6
	ReplicationFactor int16  `yaml:"replication_factor"` // default -1: the broker's default
	// Encoding is json (default), avro (single-object), or with a
	// schema registry avro-confluent or json-confluent; raw and events
	// only.
	Encoding string `yaml:"encoding"`
	// Subject is the Schema Registry subject Firehose writes this topic's
	// values under, with a confluent encoding; default <name>-value
	// (TopicNameStrategy). Values are read by the schema id they carry.
	Subject string `yaml:"subject"`
	// Compression is how the processor compresses what it writes, set on
	// topology.events (the processor's one producer writes the events,
	// the DLQ and the state with it): snappy (default), lz4, zstd, gzip
	// or none.
	Compression string            `yaml:"compression"`
	Configs     map[string]string `yaml:"configs"`
}

// MaxRecordBytes is the largest record the topic takes: its
// max.message.bytes (set by topology apply, 8 MiB by default), and never
// more than kafkaclient.ProducerMaxBytes.
func (t Topic) MaxRecordBytes() int {
	n, err := strconv.Atoi(t.Configs["max.message.bytes"])
	if err != nil || n <= 0 || n > kafkaclient.ProducerMaxBytes {
		return kafkaclient.ProducerMaxBytes
	}
	return n
}

// Defaults every event topic gets unless the config overrides them: 72 h of
// retention, and room for events up to 8 MiB so an oversize event reaches
// the processor (and its DLQ) instead of being refused at produce time.
const (
	RetentionMS          = "259200000"
	DefaultPartitions    = 6
	topicMaxMessageBytes = "8388608"
)

// ProducerCompressions are the values of topology.events.compression.
var ProducerCompressions = []string{"snappy", "lz4", "zstd", "gzip", "none"}

// Encodings of the topics.
var (
	// TopicEncodings are the encodings of the raw and events topics;
	// ConfluentEncodings those of them that need a schema registry.
	TopicEncodings     = []string{"json", "avro", "avro-confluent", "json-confluent"}
	ConfluentEncodings = []string{"avro-confluent", "json-confluent"}
)

// Defaults fills the fields left empty.
func (c *Config) Defaults() {
	deleteTopic := map[string]string{
		"retention.ms":      RetentionMS,
		"cleanup.policy":    "delete",
		"max.message.bytes": topicMaxMessageBytes,
	}
	c.Raw.setDefaults("events.raw", deleteTopic)
	c.Events.setDefaults("events", deleteTopic)
	c.DLQ.setDefaults("events.dlq", deleteTopic)
	if c.State.Partitions == 0 {
		c.State.Partitions = c.Raw.Partitions // dedupe state is co-partitioned with raw
	}
	c.State.setDefaults("firehose.state", map[string]string{"cleanup.policy": "compact"})
	for _, t := range []*Topic{&c.Raw, &c.Events} {
		if t.Encoding == "" {
			t.Encoding = "json"
		}
		if t == &c.Events && t.Compression == "" {
			t.Compression = "snappy"
		}
		if t.Subject == "" && slices.Contains(ConfluentEncodings, t.Encoding) {
			t.Subject = t.Name + "-value"
		}
	}
}

func (t *Topic) setDefaults(name string, configs map[string]string) {
	if t.Name == "" {
		t.Name = name
	}
	if t.Partitions == 0 {
		t.Partitions = DefaultPartitions
	}
	if t.ReplicationFactor == 0 {
		t.ReplicationFactor = -1
	}
	merged := maps.Clone(configs)
	maps.Copy(merged, t.Configs)
	t.Configs = merged
}

var topicNameRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// NeedsRegistry reports whether a topic's encoding needs a schema
// registry, and which topic's (raw or events).
func (c Config) NeedsRegistry() []string {
	var out []string
	for key, t := range map[string]Topic{"raw": c.Raw, "events": c.Events} {
		if slices.Contains(ConfluentEncodings, t.Encoding) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// Validate reports every problem of the section, with paths relative to it.
func (c Config) Validate() error {
	var v yamlconf.Problems
	topics := map[string]string{}
	for _, t := range []struct {
		key string
		t   Topic
	}{{"raw", c.Raw}, {"events", c.Events}, {"dlq", c.DLQ}, {"state", c.State}} {
		p := t.key
		if !topicNameRe.MatchString(t.t.Name) {
			v.Add(p+".name", "%q is not a valid topic name", t.t.Name)
		}
		if other, dup := topics[t.t.Name]; dup {
			v.Add(p+".name", "topic %q is also topology.%s", t.t.Name, other)
		}
		topics[t.t.Name] = t.key
		if t.t.Partitions < 1 {
			v.Add(p+".partitions", "must be at least 1, got %d", t.t.Partitions)
		}
		if t.t.ReplicationFactor < -1 || t.t.ReplicationFactor == 0 {
			v.Add(p+".replication_factor", "must be -1 (broker default) or at least 1")
		}
		if t.t.Compression != "" && t.key != "events" {
			v.Add(p+".compression", "is set on topology.events, for everything the processor writes")
		} else if t.t.Compression != "" {
			v.OneOf(p+".compression", t.t.Compression, ProducerCompressions)
		}
		switch {
		case t.t.Encoding == "":
		case (t.key == "dlq" || t.key == "state") && t.t.Encoding != "json":
			v.Add(p+".encoding", "is not configurable: Firehose writes this topic itself")
		default:
			v.OneOf(p+".encoding", t.t.Encoding, TopicEncodings)
		}
	}
	return v.Err()
}
