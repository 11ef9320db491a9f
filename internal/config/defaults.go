package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/firehose/firehose/connectors/spec"
	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/schemas"
)

// Defaults every event topic gets unless the config overrides them: 72 h of
// retention, and room for events up to 8 MiB so an oversize event reaches
// the processor (and its DLQ) instead of being refused at produce time.
const (
	RetentionMS          = "259200000"
	DefaultPartitions    = 6
	DefaultMaxEventBytes = 1 << 20
	topicMaxMessageBytes = "8388608"
)

// Pull API request limits: in flight per token and in all.
const (
	DefaultMaxRequestsPerToken = 8
	DefaultMaxRequests         = 256
)

// Consumer group timeouts, as Kafka's clients default them.
const (
	DefaultSessionTimeout   = 45 * time.Second
	DefaultRebalanceTimeout = 60 * time.Second
)

// DefaultShutdownTimeout is how long a stop may take by default, for the
// processor and every connector: finishing the transaction or flushing open
// batches, committing, and leaving the group (run --shutdown-timeout).
const DefaultShutdownTimeout = 30 * time.Second

// SetDefaults fills every field left empty. It is the one place defaults
// live; Load calls it before Validate.
func (c *Config) SetDefaults() {
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = "firehose"
	}
	if c.API.StallTimeout == 0 {
		c.API.StallTimeout = 2 * time.Minute
	}
	if c.API.MaxRequestsPerToken == 0 {
		c.API.MaxRequestsPerToken = DefaultMaxRequestsPerToken
	}
	if c.API.MaxRequests == 0 {
		c.API.MaxRequests = DefaultMaxRequests
	}
	if c.Tracing.ServiceName == "" {
		c.Tracing.ServiceName = "firehose"
	}
	if c.Tracing.SampleRatio == nil {
		one := 1.0
		c.Tracing.SampleRatio = &one
	}
	if c.Kafka.SessionTimeout == 0 {
		c.Kafka.SessionTimeout = DefaultSessionTimeout
	}
	if c.Kafka.RebalanceTimeout == 0 {
		c.Kafka.RebalanceTimeout = DefaultRebalanceTimeout
	}
	deleteTopic := map[string]string{
		"retention.ms":      RetentionMS,
		"cleanup.policy":    "delete",
		"max.message.bytes": topicMaxMessageBytes,
	}
	topicDefaults(&c.Topology.Raw, "events.raw", deleteTopic)
	topicDefaults(&c.Topology.Events, "events", deleteTopic)
	topicDefaults(&c.Topology.DLQ, "events.dlq", deleteTopic)
	if c.Topology.State.Partitions == 0 {
		c.Topology.State.Partitions = c.Topology.Raw.Partitions // dedupe state is co-partitioned with raw
	}
	topicDefaults(&c.Topology.State, "firehose.state", map[string]string{"cleanup.policy": "compact"})
	for _, t := range []*Topic{&c.Topology.Raw, &c.Topology.Events} {
		if t.Encoding == "" {
			t.Encoding = "json"
		}
		if t == &c.Topology.Events && t.Compression == "" {
			t.Compression = "snappy"
		}
		if t.Subject == "" && slices.Contains(ConfluentEncodings, t.Encoding) {
			t.Subject = t.Name + "-value"
		}
	}
	if pr := &c.Processor.Profiles; pr.Enabled() {
		if pr.PropertiesField == "" {
			pr.PropertiesField = "properties"
		}
		if pr.CoalesceInterval == 0 {
			pr.CoalesceInterval = 2 * time.Minute
		}
		if pr.RestInterval == 0 {
			pr.RestInterval = 2 * time.Minute
		}
		if pr.TTL == 0 {
			pr.TTL = 720 * time.Hour
		}
		pr.SetBounds()
	}
	if c.SchemaRegistry.Timeout == 0 {
		c.SchemaRegistry.Timeout = 10 * time.Second
	}
	if c.Processor.Group == "" {
		c.Processor.Group = "firehose-processor"
	}
	if c.Processor.TransactionalID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		c.Processor.TransactionalID = "firehose-processor-" + host
	}
	if c.Processor.Dedupe.TTL == 0 {
		c.Processor.Dedupe.TTL = 72 * time.Hour
	}
	if c.Processor.MaxEventBytes == 0 {
		c.Processor.MaxEventBytes = DefaultMaxEventBytes
	}
	for i := range c.Connectors {
		cn := &c.Connectors[i]
		if cn.Topic == "" {
			cn.Topic = c.Topology.Events.Name
		}
		if cn.Group == "" && cn.Name != "" {
			cn.Group = "firehose-connector-" + cn.Name
		}
		cn.Batch.fill(Batch{MaxEvents: spec.DefaultBatchMaxEvents, MaxBytes: spec.DefaultBatchMaxBytes, MaxAge: spec.DefaultBatchMaxAge})
		if cn.Encoding == "" {
			cn.Encoding = spec.DefaultEncoding
		}
		if cn.Compression == "" {
			cn.Compression = spec.DefaultCompression
			if cn.Encoding == "avro" {
				cn.Compression = "none" // the container file compresses its blocks
			}
		}
		if cn.AvroCodec == "" {
			cn.AvroCodec = spec.DefaultAvroCodec
		}
		if cn.TimeSource == "" {
			cn.TimeSource = spec.DefaultTimeSource
		}
		if cn.Retry.MaxAttempts == 0 {
			cn.Retry.MaxAttempts = spec.DefaultRetryMaxAttempts
		}
		if cn.Retry.InitialBackoff == 0 {
			cn.Retry.InitialBackoff = spec.DefaultRetryInitial
		}
		if cn.Retry.MaxBackoff == 0 {
			cn.Retry.MaxBackoff = spec.DefaultRetryMax
		}
		if cn.OnPermanentError == "" {
			cn.OnPermanentError = spec.DefaultOnPermanentError
		}
		if cn.MaxBufferedBytes == 0 {
			cn.MaxBufferedBytes = spec.DefaultMaxBufferedBytes
		}
		if cn.MaxInFlight == 0 {
			cn.MaxInFlight = spec.DefaultMaxInFlight
		}
	}
	if c.API.Listen == "" {
		c.API.Listen = "127.0.0.1:8080"
	}
}

func topicDefaults(t *Topic, name string, configs map[string]string) {
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

var (
	nameRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	topicNameRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
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

// Validate checks the whole config and returns every problem, each a
// *FieldError with its path. Destination sections are checked by Load
// through Options.Destinations.
func (c *Config) Validate() error {
	var v validator
	if len(c.Kafka.Brokers) == 0 {
		v.add("kafka.brokers", "at least one broker is required, e.g. [\"127.0.0.1:9092\"]")
	}
	for i, b := range c.Kafka.Brokers {
		if !strings.Contains(b, ":") {
			v.add(fmt.Sprintf("kafka.brokers[%d]", i), "must be host:port, got %q", b)
		}
	}
	v.sasl("kafka.sasl", c.Kafka.SASL)
	if c.API.MaxRequestsPerToken < 0 {
		v.add("api.max_requests_per_token", "must be positive, got %d", c.API.MaxRequestsPerToken)
	}
	if c.API.MaxConnectionsPerClient < 0 {
		v.add("api.max_connections_per_client", "must be positive, got %d", c.API.MaxConnectionsPerClient)
	}
	if c.API.MaxRequests < 0 {
		v.add("api.max_requests", "must be positive, got %d", c.API.MaxRequests)
	}
	if e := c.Tracing.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("tracing.endpoint", "must be an OTLP/HTTP URL such as http://otel-collector:4318, got %q", e)
		}
	}
	if r := c.Tracing.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.add("tracing.sample_ratio", "must be from 0 to 1, got %v", *r)
	}
	if c.Kafka.SessionTimeout < time.Second {
		v.add("kafka.session_timeout", "must be at least 1s, got %v", c.Kafka.SessionTimeout)
	}
	if c.Kafka.RebalanceTimeout < time.Second {
		v.add("kafka.rebalance_timeout", "must be at least 1s, got %v", c.Kafka.RebalanceTimeout)
	}
	if id := c.Kafka.InstanceID; id != "" && !instanceIDPattern.MatchString(id) {
		v.add("kafka.instance_id", "must be letters, digits, '.', '_' and '-' (at most 200), got %q", id)
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		v.add("kafka.tls", "cert_file and key_file go together")
	}
	topics := map[string]string{}
	for _, t := range []struct {
		key string
		t   Topic
	}{{"raw", c.Topology.Raw}, {"events", c.Topology.Events}, {"dlq", c.Topology.DLQ}, {"state", c.Topology.State}} {
		p := "topology." + t.key
		if !topicNameRe.MatchString(t.t.Name) {
			v.add(p+".name", "%q is not a valid topic name", t.t.Name)
		}
		if other, dup := topics[t.t.Name]; dup {
			v.add(p+".name", "topic %q is also topology.%s", t.t.Name, other)
		}
		topics[t.t.Name] = t.key
		if t.t.Partitions < 1 {
			v.add(p+".partitions", "must be at least 1, got %d", t.t.Partitions)
		}
		if t.t.ReplicationFactor < -1 || t.t.ReplicationFactor == 0 {
			v.add(p+".replication_factor", "must be -1 (broker default) or at least 1")
		}
		if t.t.Compression != "" && t.key != "events" {
			v.add(p+".compression", "is set on topology.events, for everything the processor writes")
		} else if t.t.Compression != "" && !slices.Contains(ProducerCompressions, t.t.Compression) {
			v.add(p+".compression", "must be one of %s, got %q", strings.Join(ProducerCompressions, ", "), t.t.Compression)
		}
		switch {
		case t.t.Encoding == "":
		case (t.key == "dlq" || t.key == "state") && t.t.Encoding != "json":
			v.add(p+".encoding", "is not configurable: Firehose writes this topic itself")
		case !slices.Contains(TopicEncodings, t.t.Encoding):
			v.add(p+".encoding", "must be one of %s, got %q", strings.Join(TopicEncodings, ", "), t.t.Encoding)
		case slices.Contains(ConfluentEncodings, t.t.Encoding) && c.SchemaRegistry.URL == "":
			v.add(p+".encoding", "%s needs schema_registry.url", t.t.Encoding)
		}
	}
	if a := c.API.AdminListen; a != "" && a != "off" && a == c.API.Listen && !strings.HasSuffix(a, ":0") {
		v.add("api.admin_listen", "must differ from api.listen (%s), or be empty to serve everything there", a)
	}
	if c.API.StallTimeout < 30*time.Second {
		v.add("api.stall_timeout", "must be at least 30s, got %s", c.API.StallTimeout)
	}
	if sr := c.SchemaRegistry; sr.URL != "" {
		v.schemaRegistry(sr)
	}
	for i, h := range c.Processor.Headers {
		if _, err := path.Match(h, ""); err != nil || h == "" {
			v.add(fmt.Sprintf("processor.headers[%d]", i), "must be a header name or glob such as x-*, got %q", h)
		}
	}
	if c.Processor.MaxEventBytes < 1024 {
		v.add("processor.max_event_bytes", "must be at least 1KiB, got %d", c.Processor.MaxEventBytes)
	}
	v.filter("processor.filter", c.Processor.Filter)
	v.profiles(c.Processor.Profiles, c.Processor.Dedupe.IsEnabled(), c.Topology.Raw.Partitions, c.Topology.State.Partitions)
	if pr := c.Processor.Profiles; pr.Enabled() {
		// A profile's state record and its profile.updated hold its
		// properties, with room for the rest.
		limit := min(c.Topology.State.MaxRecordBytes(), c.Topology.Events.MaxRecordBytes()) - 64<<10
		if pr.MaxBytes < 1024 || int(pr.MaxBytes) > limit {
			v.add("processor.profiles.max_bytes", "must be between 1KiB and %d (the state and events topics' max.message.bytes less 64KiB), got %d", limit, pr.MaxBytes)
		}
	}
	if c.Processor.Dedupe.IsEnabled() {
		if c.Processor.Dedupe.TTL < time.Minute {
			v.add("processor.dedupe.ttl", "must be at least 1m, got %s", c.Processor.Dedupe.TTL)
		}
		if c.Topology.State.Partitions != c.Topology.Raw.Partitions {
			v.add("topology.state.partitions", "must equal topology.raw.partitions (%d): dedupe state of raw partition N is kept in state partition N", c.Topology.Raw.Partitions)
		}
	}
	hash := false
	for i, r := range c.Processor.Mask.Rules {
		p := fmt.Sprintf("processor.mask.rules[%d]", i)
		if !maskPathRe.MatchString(r.Path) {
			v.add(p+".path", "must be a dotted path into an object field, such as lead_data.ssn or metadata.contact.email; got %q", r.Path)
		}
		if !slices.Contains(MaskStrategies, r.Strategy) {
			v.add(p+".strategy", "must be one of %s, got %q", strings.Join(MaskStrategies, ", "), r.Strategy)
		}
		hash = hash || r.Strategy == "hash"
	}
	if hash && len(c.Processor.Mask.HashKey) < 16 {
		v.add("processor.mask.hash_key", "the hash strategy needs a key of at least 16 bytes; set hash_key: ${FIREHOSE_MASK_KEY} and put the key in the environment")
	}
	names := map[string]int{}
	for i, cn := range c.Connectors {
		p := fmt.Sprintf("connectors[%d]", i)
		if !nameRe.MatchString(cn.Name) {
			v.add(p+".name", "required: lower-case letters, digits, _ and -, got %q", cn.Name)
		} else if j, dup := names[cn.Name]; dup {
			v.add(p+".name", "%q is also the name of connectors[%d]", cn.Name, j)
		}
		names[cn.Name] = i
		if cn.Type == "" {
			v.add(p+".type", "required")
		}
		if cn.Batch.MaxEvents < 1 {
			v.add(p+".batch.max_events", "must be at least 1")
		}
		if cn.Batch.MaxBytes < 1 {
			v.add(p+".batch.max_bytes", "must be at least 1")
		}
		if cn.Batch.MaxAge < 10*time.Millisecond {
			v.add(p+".batch.max_age", "must be at least 10ms, got %s", cn.Batch.MaxAge)
		}
		if !slices.Contains(spec.Encodings, cn.Encoding) {
			v.add(p+".encoding", "must be one of %s, got %q", strings.Join(spec.Encodings, ", "), cn.Encoding)
		}
		if !slices.Contains(spec.Compressions, cn.Compression) {
			v.add(p+".compression", "must be one of %s, got %q", strings.Join(spec.Compressions, ", "), cn.Compression)
		}
		v.filter(p+".filter", cn.Filter)
		if !slices.Contains(spec.AvroCodecs, cn.AvroCodec) {
			v.add(p+".avro_codec", "must be one of %s, got %q", strings.Join(spec.AvroCodecs, ", "), cn.AvroCodec)
		}
		if !slices.Contains(spec.TimeSources, cn.TimeSource) {
			v.add(p+".time_source", "must be one of %s, got %q", strings.Join(spec.TimeSources, ", "), cn.TimeSource)
		}
		if !slices.Contains(spec.OnPermanentError, cn.OnPermanentError) {
			v.add(p+".on_permanent_error", "must be one of %s, got %q", strings.Join(spec.OnPermanentError, ", "), cn.OnPermanentError)
		}
		if cn.Retry.MaxAttempts < 1 {
			v.add(p+".retry.max_attempts", "must be at least 1")
		}
		if cn.Retry.InitialBackoff <= 0 || cn.Retry.MaxBackoff < cn.Retry.InitialBackoff {
			v.add(p+".retry", "initial_backoff must be positive and max_backoff at least initial_backoff")
		}
		if cn.MaxInFlight < 1 || cn.MaxInFlight > spec.MaxInFlightLimit {
			v.add(p+".max_in_flight", "must be from 1 to %d, got %d", spec.MaxInFlightLimit, cn.MaxInFlight)
		}
		if cn.MaxBufferedBytes < cn.Batch.MaxBytes {
			v.add(p+".max_buffered_bytes", "must be at least batch.max_bytes (%d), got %d", int64(cn.Batch.MaxBytes), int64(cn.MaxBufferedBytes))
		}
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 64<<20 {
		v.add("memory_limit", "must be at least 64MiB (or 0 to derive it), got %d bytes", int64(c.MemoryLimit))
	}
	v.tokens("api.tokens", c.API.Tokens)
	if k := c.API.PositionKey; k != "" && len(k) < 32 {
		v.add("api.position_key", "is %d bytes; it must be at least 32 (e.g. openssl rand -base64 48)", len(k))
	} else if k == "" && c.API.PullEnabled() {
		v.add("api.position_key", "required when api.tokens or api.tokens_file is set: it signs the positions the pull API hands out (e.g. position_key: ${FIREHOSE_POSITION_KEY}, with 32+ random bytes)")
	}
	return v.err()
}

// sasl checks a sasl section at path.
func (v *validator) sasl(path string, s SASL) {
	switch s.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			v.add(path+".username", "required with mechanism %s", s.Mechanism)
		}
	case "OAUTHBEARER":
		if (s.Token == "") == (s.TokenFile == "") {
			v.add(path+".token", "OAUTHBEARER needs one of token and token_file")
		}
	case "AWS_MSK_IAM":
		if s.Username != "" || s.Password != "" || s.Token != "" || s.TokenFile != "" {
			v.add(path+".mechanism", "AWS_MSK_IAM takes its credentials from the AWS default chain; remove username, password and token")
		}
	default:
		v.add(path+".mechanism", "must be one of %s, got %q", strings.Join(SASLMechanisms, ", "), s.Mechanism)
	}
}

// instanceIDPattern is what kafka.instance_id may hold: Kafka accepts
// these characters in a group instance id.
var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// MaskStrategies are the values MaskRule.Strategy accepts.
var MaskStrategies = []string{"last4", "email", "phone_area", "initial", "hash", "drop"}

// A mask path: a container (lead_data, metadata or an unknown top-level
// field) and at least one key, each of plain characters.
var maskPathRe = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`)

type validator struct{ errs []error }

// tokens checks a list of pull API tokens.
func (v *validator) tokens(path string, ts []APIToken) {
	for i, t := range ts {
		p := fmt.Sprintf("%s[%d]", path, i)
		if t.Account == "" {
			v.add(p+".account", "required: the account this token may read")
		}
		if len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "" {
			v.add(p+".sha256", "must be the 64 hex digits of the token's SHA-256 (firehose token new prints it)")
		}
	}
}

// filter compiles a filter section and reports its problems under path.
func (v *validator) filter(path string, f filter.Config) {
	if _, err := filter.Compile(f); err != nil {
		for _, e := range unjoin(err) {
			var p *filter.Problem
			if errors.As(e, &p) {
				v.add(path+"."+p.Path, "%s", p.Msg)
			} else {
				v.add(path, "%v", e)
			}
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, Errorf(path, format, args...))
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return errors.Join(v.errs...)
}

// RedactURL returns u as logs and errors may show it: its password and
// the values of its query replaced by xxxxx.
func RedactURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		c.RawQuery = q.Encode()
	}
	c.Fragment = ""
	return c.Redacted()
}

func (v *validator) schemaRegistry(sr SchemaRegistry) {
	u, err := url.Parse(sr.URL)
	switch {
	case err != nil:
		v.add("schema_registry.url", "is not a URL")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		// Not echoed: without a scheme, a secret may be anywhere in it.
		v.add("schema_registry.url", "must be an http:// or https:// URL with a host (the value is not shown: it may hold a secret)")
	case u.User != nil:
		v.add("schema_registry.url", "must not hold credentials (%s): the URL is logged; use schema_registry.username and password, or token", RedactURL(u))
	case u.RawQuery != "":
		v.add("schema_registry.url", "must not hold a query (%s): the URL is logged; use schema_registry.username and password, or token", RedactURL(u))
	}
	if (sr.Username == "") != (sr.Password == "") {
		v.add("schema_registry.password", "username and password go together")
	}
	if sr.Token != "" && sr.Username != "" {
		v.add("schema_registry.token", "use either a token or a username and password, not both")
	}
	if sr.Timeout < 0 {
		v.add("schema_registry.timeout", "must be positive, got %s", sr.Timeout)
	}
}

var segmentNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (v *validator) profiles(pr Profiles, dedupe bool, rawPartitions, statePartitions int32) {
	const p = "processor.profiles"
	if !pr.Enabled() {
		if len(pr.Segments) > 0 {
			v.add(p+".event_types", "segments need profile changes: set event_types or resource_types")
		}
		return
	}
	for key, globs := range map[string][]string{"event_types": pr.EventTypes, "resource_types": pr.ResourceTypes} {
		for i, g := range globs {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				v.add(fmt.Sprintf("%s.%s[%d]", p, key, i), "must be a name or glob such as profile.*, got %q", g)
			}
		}
	}
	if schemas.IsField(pr.PropertiesField) {
		v.add(p+".properties_field", "%q is a field of the event schema; name an unknown top-level field", pr.PropertiesField)
	}
	for key, d := range map[string]time.Duration{"coalesce_interval": pr.CoalesceInterval, "rest_interval": pr.RestInterval} {
		if d < 100*time.Millisecond {
			v.add(p+"."+key, "must be at least 100ms, got %s", d)
		}
	}
	if pr.MaxProperties < 1 {
		v.add(p+".max_properties", "must be at least 1, got %d", pr.MaxProperties)
	}
	if pr.TTL < pr.RestInterval {
		v.add(p+".ttl", "must be at least rest_interval (%s), got %s", pr.RestInterval, pr.TTL)
	}
	if statePartitions != rawPartitions && !dedupe { // else dedupe's check says it
		v.add("topology.state.partitions", "must equal topology.raw.partitions (%d): the state of profiles in raw partition N is kept in state partition N", rawPartitions)
	}
	seen := map[string]bool{}
	for i, s := range pr.Segments {
		sp := fmt.Sprintf("%s.segments[%d]", p, i)
		if !segmentNameRe.MatchString(s.Name) {
			v.add(sp+".name", "must be lower-case letters, digits, _ and - (at most 64), got %q", s.Name)
		}
		if seen[s.Name] {
			v.add(sp+".name", "segment %q is defined twice", s.Name)
		}
		seen[s.Name] = true
		if _, err := filter.CompileSegment(s.Expr); err != nil {
			v.add(sp+".expr", "%v", err)
		}
	}
}
