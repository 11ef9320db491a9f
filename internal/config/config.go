// Package config loads and validates firehose.yaml. Loading is done once at
// start; every component then receives its typed section. Errors name the
// file, line and field of each problem, all at once.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/filter"
)

// Config is the whole of firehose.yaml.
type Config struct {
	Kafka      Kafka       `yaml:"kafka"`
	Topology   Topology    `yaml:"topology"`
	Processor  Processor   `yaml:"processor"`
	Connectors []Connector `yaml:"connectors"`
	API        API         `yaml:"api"`
	Tracing    Tracing     `yaml:"tracing"`
	// SchemaRegistry is needed by topics whose encoding is avro-confluent
	// or json-confluent.
	SchemaRegistry SchemaRegistry `yaml:"schema_registry"`
	// MemoryLimit is the soft memory limit `firehose run` gives Go's
	// collector; 0 (the default) derives it from the connectors run (see
	// README, Memory). GOMEMLIMIT in the environment wins.
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// SchemaRegistry is a Confluent-compatible Schema Registry (Confluent's,
// Redpanda's, Karapace, Apicurio's ccompat API).
type SchemaRegistry struct {
	// URL is the registry, e.g. https://registry:8081. Credentials go in
	// Username and Password or Token, never in the URL, which is logged.
	URL string `yaml:"url"`
	// Username and Password are basic auth (Confluent Cloud: the API key
	// and secret); put the password in the environment.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Token is a bearer token, instead of Username and Password.
	Token string `yaml:"token"`
	// TLS adds a CA or a client certificate for an https URL.
	TLS TLS `yaml:"tls"`
	// Register registers the event schema under the subjects Firehose
	// writes (default true); false only looks it up, and start fails if
	// an administrator has not registered it.
	Register *bool `yaml:"register"`
	// Timeout bounds one registry request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// IsRegister reports whether Firehose registers its schemas.
func (s SchemaRegistry) IsRegister() bool { return s.Register == nil || *s.Register }

// Tracing exports OpenTelemetry spans of processing and delivery, each a
// child of the producer's trace context (a traceparent header on the raw
// record). Off (the default) when Endpoint is empty: then no span is made.
type Tracing struct {
	// Endpoint is an OTLP/HTTP collector, e.g. http://otel-collector:4318.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of traces sampled that no producer decided
	// for (default 1); a producer's sampled flag is always followed.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName names the process in traces; default firehose.
	ServiceName string `yaml:"service_name"`
}

// Kafka says how to reach the cluster.
type Kafka struct {
	Brokers  []string `yaml:"brokers"`   // host:port seeds; required
	ClientID string   `yaml:"client_id"` // default "firehose"
	TLS      TLS      `yaml:"tls"`
	SASL     SASL     `yaml:"sasl"`
	// Rack is this worker's rack (client.rack): with brokers configured
	// for it (replica.selector.class = RackAwareReplicaSelector), fetches
	// go to the nearest replica, e.g. in the same availability zone.
	Rack string `yaml:"rack"`
	// InstanceID turns on static group membership: each consumer group
	// of the process (the processor's, each connector's) gets the member
	// instance id <InstanceID>-<processor|connector name>. A worker that
	// restarts with the same id takes its partitions back at once,
	// without a rebalance, and replaces a crashed incarnation the broker
	// still counts as a member. Every worker of a group needs its own id,
	// stable across restarts (a StatefulSet pod name, or a slot number);
	// two live workers with one id fence each other. A worker stopped
	// for good keeps its partitions until SessionTimeout. Empty (the
	// default): dynamic membership. run --instance-id overrides it.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the broker waits for a worker's
	// heartbeat before it gives the worker's partitions to others
	// (default 45s; the broker bounds it, 6s to 30m on Kafka's defaults).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout is how long a rebalance waits for every member to
	// rejoin (default 60s). A connector's revoke waits for its
	// deliveries within it.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
}

// TLS configures encryption to the brokers. Files are PEM.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures authentication; Mechanism is one of SASLMechanisms and
// empty disables SASL.
//   - PLAIN, SCRAM-SHA-256, SCRAM-SHA-512: Username and Password (put the
//     password in the environment: password: ${KAFKA_PASSWORD}).
//   - OAUTHBEARER: Token (a static token, e.g. ${KAFKA_OAUTH_TOKEN}) or
//     TokenFile, read again at every authentication, so a sidecar that
//     refreshes the file refreshes the token.
//   - AWS_MSK_IAM: credentials from the AWS default chain (environment,
//     shared files, IRSA, instance role), the same loader S3 and Kinesis
//     use; the region comes from the broker's host name
//     (…kafka.<region>.amazonaws.com) or AWS_REGION.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// SASLMechanisms are the values SASL.Mechanism accepts.
var SASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"}

// Topology names the four topics and how they are created.
type Topology struct {
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

// ProducerMaxBytes is the largest record batch Firehose's producers send
// (kgo.ProducerBatchMaxBytes), and so the largest record.
const ProducerMaxBytes = 8 << 20

// MaxRecordBytes is the largest record the topic takes: its
// max.message.bytes (set by topology apply, 8 MiB by default), and never
// more than ProducerMaxBytes.
func (t Topic) MaxRecordBytes() int {
	n, err := strconv.Atoi(t.Configs["max.message.bytes"])
	if err != nil || n <= 0 || n > ProducerMaxBytes {
		return ProducerMaxBytes
	}
	return n
}

// Processor configures the stage from the raw topic to the events topic.
type Processor struct {
	Enabled       *bool    `yaml:"enabled"`         // default true
	Group         string   `yaml:"group"`           // default firehose-processor
	MaxEventBytes ByteSize `yaml:"max_event_bytes"` // default 1 MiB; larger events go to the DLQ
	// TransactionalID names this process's transactional producer. It must
	// be stable across restarts of one process (so a restart fences and
	// aborts the transaction its crashed predecessor left open) and unique
	// among processes. Default firehose-processor-<hostname>.
	TransactionalID string `yaml:"transactional_id"`

	// Headers names the record headers carried from a raw record to its
	// event (globs such as "x-*"; traceparent and tracestate carry a
	// trace). Empty carries every header. Firehose's own (firehose.*)
	// are never carried: they describe the raw record, not the event.
	Headers []string `yaml:"headers"`

	Filter filter.Config `yaml:"filter"` // which events continue; empty keeps all
	Dedupe Dedupe        `yaml:"dedupe"`
	Enrich Enrich        `yaml:"enrich"`
	Mask   Mask          `yaml:"mask"`
	// Profiles coalesces profile property changes and evaluates segments;
	// off unless event_types or resource_types is set.
	Profiles Profiles `yaml:"profiles"`
}

// Profiles turns a stream of profile property changes into one
// profile.updated event per changed profile per CoalesceInterval, and
// evaluates Segments on profiles at rest (no change for RestInterval),
// emitting profile.segments_changed when membership changed.
type Profiles struct {
	// EventTypes and ResourceTypes (globs) say which raw events are
	// profile changes; an event matching either is one.
	EventTypes    []string `yaml:"event_types"`
	ResourceTypes []string `yaml:"resource_types"`
	// PropertiesField is the top-level object holding the changed
	// properties (default properties).
	PropertiesField string `yaml:"properties_field"`
	// CoalesceInterval is how often changes are emitted (default 2m).
	CoalesceInterval time.Duration `yaml:"coalesce_interval"`
	// RestInterval is how long a profile must go without a change to be
	// at rest, and how often segments are evaluated (default 2m).
	RestInterval time.Duration `yaml:"rest_interval"`
	// TTL is how long a profile is remembered after its last change
	// (default 720h, 30 days); then its state is deleted.
	TTL      time.Duration `yaml:"ttl"`
	Segments []Segment     `yaml:"segments"`
	// MaxBytes bounds one profile's properties, snapshot and pending
	// changes together, as JSON (default 1 MiB); MaxProperties bounds
	// how many it has (default 1,000). A change that would take a
	// profile past either goes to the DLQ, class oversize: a profile's
	// state record and its profile.updated must fit their topics.
	MaxBytes      ByteSize `yaml:"max_bytes"`
	MaxProperties int      `yaml:"max_properties"`
}

// The defaults of Profiles.MaxBytes and MaxProperties.
const (
	DefaultProfileMaxBytes      = 1 << 20
	DefaultProfileMaxProperties = 1000
)

// SetBounds sets MaxBytes and MaxProperties to their defaults where zero.
func (p *Profiles) SetBounds() {
	if p.MaxBytes == 0 {
		p.MaxBytes = DefaultProfileMaxBytes
	}
	if p.MaxProperties == 0 {
		p.MaxProperties = DefaultProfileMaxProperties
	}
}

// Enabled reports whether the profiles stage runs.
func (p Profiles) Enabled() bool { return len(p.EventTypes) > 0 || len(p.ResourceTypes) > 0 }

// Segment is one named segment: a boolean expression over a profile.
type Segment struct {
	Name string `yaml:"name"`
	Expr string `yaml:"expr"`
}

// Dedupe drops an event whose sequence is not above the highest already
// passed for its resource. The state lives in the state topic, so it
// survives restarts and rebalances.
type Dedupe struct {
	Enabled *bool `yaml:"enabled"` // default true
	// TTL is how long a resource is remembered after its last event;
	// default 72h, the topics' retention.
	TTL time.Duration `yaml:"ttl"`
}

// IsEnabled reports whether dedupe runs.
func (d Dedupe) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// Enrich adds an "enrichment" object to every event: the flow's and the
// account's reference data, static tags, and when the event was processed.
type Enrich struct {
	// Flows maps flow_id to data about the flow, e.g. {name: Auto Leads, version: 3}.
	Flows map[string]map[string]any `yaml:"flows"`
	// Accounts maps account_id to data about the account.
	Accounts map[string]map[string]any `yaml:"accounts"`
	// Tags are added to every event.
	Tags map[string]string `yaml:"tags"`
	// Topic, if set, is a compacted topic of reference data that updates
	// Flows and Accounts without a restart: key "flow:<id>" or
	// "account:<id>", value a JSON object, or no value to delete.
	Topic string `yaml:"topic"`
	// ProcessingTime adds processed_at and latency_ms (from the event's
	// timestamp); default true.
	ProcessingTime *bool `yaml:"processing_time"`
}

// Mask replaces personal data before anything leaves the processor.
type Mask struct {
	// Defaults adds the default rules: lead_data.ssn last4,
	// lead_data.email email, lead_data.phone phone_area,
	// lead_data.first_name and lead_data.last_name initial. Default true.
	// A rule in Rules for the same path replaces the default one.
	Defaults *bool      `yaml:"defaults"`
	Rules    []MaskRule `yaml:"rules"`
	// HashKey is the HMAC-SHA-256 key of the hash strategy; put it in
	// the environment: hash_key: ${FIREHOSE_MASK_KEY}.
	HashKey string `yaml:"hash_key"`
}

// MaskRule masks the value at Path (lead_data.ssn, metadata.contact.email,
// or <unknown top-level field>.sub) with Strategy: last4, email,
// phone_area, initial, hash or drop.
type MaskRule struct {
	Path     string `yaml:"path"`
	Strategy string `yaml:"strategy"`
}

// DefaultMaskRules are the rules Mask.Defaults adds.
var DefaultMaskRules = []MaskRule{
	{"lead_data.ssn", "last4"},
	{"lead_data.email", "email"},
	{"lead_data.phone", "phone_area"},
	{"lead_data.first_name", "initial"},
	{"lead_data.last_name", "initial"},
}

// MaskRules returns the rules in force: the defaults (unless disabled)
// overridden by path by the configured ones, in a stable order.
func (m Mask) MaskRules() []MaskRule {
	var out []MaskRule
	if m.Defaults == nil || *m.Defaults {
		for _, d := range DefaultMaskRules {
			if !slices.ContainsFunc(m.Rules, func(r MaskRule) bool { return r.Path == d.Path }) {
				out = append(out, d)
			}
		}
	}
	return append(out, m.Rules...)
}

// IsEnabled reports whether the processor runs.
func (p Processor) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// Connector is one delivery pipeline: a consumer group over the events
// topic that batches, encodes, compresses and delivers to one destination.
// Its destination settings sit under a key named after its type:
//
//   - name: archive
//     type: file
//     file: {dir: /var/lib/firehose/out}
type Connector struct {
	// NotRun marks a connector this process does not run (Options.Scope):
	// only its name, type, enabled, topic and group were read.
	NotRun      bool   `yaml:"-"`
	Name        string `yaml:"name"`        // required, unique; [a-z0-9_-]
	Type        string `yaml:"type"`        // destination type, e.g. file
	Enabled     *bool  `yaml:"enabled"`     // default true
	Topic       string `yaml:"topic"`       // default: topology.events.name
	Group       string `yaml:"group"`       // default firehose-connector-<name>
	Batch       Batch  `yaml:"batch"`       // when a batch is delivered
	Encoding    string `yaml:"encoding"`    // ndjson (default), json (one array) or avro (object container file)
	Compression string `yaml:"compression"` // gzip (default), snappy, lz4, zstd or none
	// AvroCodec is the block codec of Avro container files: deflate
	// (default), snappy or null. With encoding avro, compression is
	// usually none.
	AvroCodec string `yaml:"avro_codec"`
	// TimeSource is where {{year}}…{{minute}} of a path come from: event
	// (the event's timestamp, default) or processing (the time the batch
	// was opened).
	TimeSource string `yaml:"time_source"`
	// Retry bounds how a failing batch is retried.
	Retry Retry `yaml:"retry"`
	// OnPermanentError is what a batch the destination rejects does: dlq
	// (default: its events go to the DLQ and the partition goes on) or
	// stop (the connector stops, and nothing past it is committed).
	OnPermanentError string `yaml:"on_permanent_error"`
	// MaxBufferedBytes caps the bytes of open batches of this connector;
	// reaching it delivers the largest open batches at once. Default 64MiB.
	MaxBufferedBytes ByteSize `yaml:"max_buffered_bytes"`
	// MaxInFlight bounds the batches this connector delivers at once,
	// across its partitions (default 32). An object store may have
	// several of one partition in flight; a destination that keeps order
	// at most one per lane (4 lanes per partition, by key).
	MaxInFlight int `yaml:"max_in_flight"`
	// Filter selects the events this connector delivers; same syntax as
	// the processor's.
	Filter filter.Config `yaml:"filter"`

	// Destination holds the decoded settings of the section named after
	// Type, as returned by Options.Destinations.
	Destination any `yaml:"-"`

	Rest map[string]yaml.Node `yaml:",inline"`
}

// IsEnabled reports whether the connector runs.
func (c Connector) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Retry bounds the retries of one batch: exponential backoff with full
// jitter from Initial to Max, MaxAttempts attempts in all; a destination's
// Retry-After, when longer, is honoured. Then the batch is dead-lettered.
type Retry struct {
	MaxAttempts    int           `yaml:"max_attempts"`    // default 10
	InitialBackoff time.Duration `yaml:"initial_backoff"` // default 200ms
	MaxBackoff     time.Duration `yaml:"max_backoff"`     // default 30s
}

// Batch bounds a batch; it is delivered when any bound is reached.
type Batch struct {
	MaxEvents int           `yaml:"max_events"` // default 10000
	MaxBytes  ByteSize      `yaml:"max_bytes"`  // default 5MB, before compression
	MaxAge    time.Duration `yaml:"max_age"`    // default 5m, from the first event in the batch
}

// fill sets the bounds left at zero from d.
func (b *Batch) fill(d Batch) {
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

// API configures the process's one HTTP listener: health, metrics and the
// pull API. The pull API is served when tokens are configured (or in
// firehose dev, which accepts dev-<account_id>).
type API struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:8080; "off" disables
	// PositionKey signs the positions the pull API hands out; every API
	// replica needs the same one. At least 32 bytes; take it from the
	// environment: position_key: ${FIREHOSE_POSITION_KEY}.
	PositionKey string `yaml:"position_key"`
	// Tokens are the pull API's bearer tokens, stored as SHA-256 hashes;
	// `firehose token new --account A` makes one.
	Tokens []APIToken `yaml:"tokens"`
	// TokensFile holds more tokens in the same form (a top-level tokens:
	// list). It is read again when it changes, so tokens rotate without a
	// restart.
	TokensFile string `yaml:"tokens_file"`
	// MaxRequestsPerToken bounds one token's pull requests in flight at
	// once (default 8); more get 429 with Retry-After, so one client
	// cannot take the process from the others.
	MaxRequestsPerToken int `yaml:"max_requests_per_token"`
	// MaxRequests bounds all pull requests in flight (default 256).
	MaxRequests int `yaml:"max_requests"`
	// MaxConnectionsPerClient bounds the open connections of one client
	// address on each listener (default 256 of the 1,024 a listener
	// holds), so that one client cannot leave probes waiting. Behind a
	// proxy or load balancer every client has its address: raise it.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// StallTimeout: /healthz fails when the processor's or a connector's
	// loop has not come round for this long (default 2m), so that an
	// orchestrator restarts a wedged worker. An idle loop comes round
	// every few seconds; one waiting for an unreachable schema registry
	// does not, so a registry outage longer than this fails /healthz.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// AdminListen, if set, is a second listener for the operators'
	// endpoints: /metrics and (with Pprof) /debug/pprof/ move there, off
	// the public API's port, and /healthz and /readyz are served on both,
	// for probes and load balancers. Empty (the default): all on Listen.
	AdminListen string `yaml:"admin_listen"`
	// Pprof serves Go's profiles under /debug/pprof/ (default false). They
	// show the program's internals and a CPU profile costs CPU while it
	// runs: turn it on only where the listener is not public.
	Pprof bool `yaml:"pprof"`
}

// PullEnabled reports whether the pull API has any tokens to serve.
func (a API) PullEnabled() bool { return len(a.Tokens) > 0 || a.TokensFile != "" }

// APIToken grants one bearer token access to one account's events.
type APIToken struct {
	Account string `yaml:"account"`
	SHA256  string `yaml:"sha256"` // hex SHA-256 of the token; the token itself is never stored
	Note    string `yaml:"note"`   // who holds it, for the humans who rotate it
}

// TokensFile is the form of api.tokens_file.
type TokensFile struct {
	Tokens []APIToken `yaml:"tokens"`
}

// LoadTokens reads a tokens file strictly, with file:line errors.
func LoadTokens(path string) ([]APIToken, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	return ParseTokens(path, data)
}

// ParseTokens is LoadTokens for bytes in memory; name is used in errors.
func ParseTokens(path string, data []byte) ([]APIToken, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(path, err)
	}
	var f TokensFile
	if root.Kind == 0 {
		return nil, nil
	}
	var errs []error
	if err := Decode(&root, "", &f); err != nil {
		errs = append(errs, err)
	}
	var v validator
	v.tokens("tokens", f.Tokens)
	errs = append(errs, v.err())
	if err := errors.Join(errs...); err != nil {
		return nil, locate(path, &root, err)
	}
	return f.Tokens, nil
}

// ByteSize is a size in bytes that YAML may give as 1048576, "1MiB" or "5MB".
type ByteSize int64

// UnmarshalYAML accepts an integer or a human size such as 5MB or 1MiB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a size such as 5MB or 1MiB", n.Line)}}
	}
	if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil && i >= 0 {
		*b = ByteSize(i)
		return nil
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > 1<<62 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a size such as 5MB or 1MiB, got %q", n.Line, n.Value)}}
	}
	*b = ByteSize(v)
	return nil
}

// Destinations decodes and validates the settings section of a connector
// type. The connectors' registry implements it; config knows no
// destination.
type Destinations interface {
	// Types lists the known destination types.
	Types() []string
	// BatchDefaults are the batch bounds a type uses when the connector
	// sets none (object stores want big batches, webhooks small ones).
	BatchDefaults(typ string) Batch
	// DefaultCompression is the compression a type uses when the
	// connector sets none; "" means gzip.
	DefaultCompression(typ string) string
	// Decode decodes the section of typ; its errors are FieldErrors with
	// paths relative to the section.
	Decode(typ string, n *yaml.Node) (any, error)
	// Records reports whether typ writes one record per event (Kafka,
	// Kinesis, Pub/Sub), which takes no encoding, compression or
	// avro_codec: each event is written as its JSON.
	Records(typ string) bool
}

// Options steer Load.
type Options struct {
	// Lookup reads environment variables for ${VAR}; default os.LookupEnv.
	Lookup LookupFunc
	// Destinations decodes connector sections; nil leaves them undecoded
	// (Connector.Destination stays nil).
	Destinations Destinations
	// Scope, if set, reads only the parts of the config one process
	// uses; see Scope.
	Scope *Scope
}

//go:embed dev.yaml
var devConfig []byte

// Dev returns the embedded config that firehose dev runs by default.
func Dev() []byte { return slices.Clone(devConfig) }

// Load reads, expands, decodes, defaults and validates one config file.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, opts)
}

// Parse is Load for bytes already in memory; name is used in errors.
// maxExpandedNodes bounds the values of a config file with its aliases
// expanded: a few kilobytes of anchors that alias each other stand for
// billions of values, which every walk of the document would visit.
const maxExpandedNodes = 100_000

// expandedNodes counts n's values with aliases expanded, stopping once
// the count passes limit.
func expandedNodes(n *yaml.Node, limit int) int {
	count := 0
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || count > limit {
			return
		}
		count++
		if n.Kind == yaml.AliasNode {
			walk(n.Alias)
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return count
}

func Parse(name string, data []byte, opts Options) (*Config, error) {
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(name, err)
	}
	if root.Kind == 0 {
		return nil, &FieldError{File: name, Msg: "the file is empty"}
	}
	if n := expandedNodes(&root, maxExpandedNodes); n > maxExpandedNodes {
		return nil, &FieldError{File: name, Msg: fmt.Sprintf("the file's aliases expand to more than %d values: an alias may repeat an anchored value, not multiply it", maxExpandedNodes)}
	}
	notRun := opts.Scope.prune(&root)
	var errs []error
	expandNode(&root, "", opts.Lookup, &errs)
	c := new(Config)
	if err := Decode(&root, "", c); err != nil {
		errs = append(errs, err)
	}
	for i := range c.Connectors {
		c.Connectors[i].NotRun = slices.Contains(notRun, c.Connectors[i].Name)
	}
	if opts.Destinations != nil {
		for i := range c.Connectors {
			cn := &c.Connectors[i]
			if opts.Destinations.Records(cn.Type) && !cn.NotRun {
				for field, v := range map[string]string{"encoding": cn.Encoding, "compression": cn.Compression, "avro_codec": cn.AvroCodec} {
					if v != "" {
						errs = append(errs, Errorf(fmt.Sprintf("connectors[%d].%s", i, field), "a %s connector writes one record per event, as JSON: it takes no %s (remove it)", cn.Type, field))
					}
				}
			}
			cn.Batch.fill(opts.Destinations.BatchDefaults(cn.Type))
			if cn.Compression == "" && cn.Encoding != "avro" {
				cn.Compression = opts.Destinations.DefaultCompression(cn.Type)
			}
		}
	}
	c.SetDefaults()
	for i := range c.Connectors {
		if !c.Connectors[i].NotRun {
			errs = append(errs, c.decodeDestination(i, opts.Destinations))
		}
	}
	errs = append(errs, c.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, locate(name, &root, err)
	}
	return c, nil
}

func (c *Config) decodeDestination(i int, d Destinations) error {
	cn := &c.Connectors[i]
	path := fmt.Sprintf("connectors[%d]", i)
	var errs []error
	known, _ := structFields(reflect.TypeFor[Connector]())
	for k := range cn.Rest {
		if k != cn.Type {
			msg := fmt.Sprintf("unknown field %q", k)
			if s := closest(k, append(keys(known), cn.Type)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else if cn.Type == "" {
				msg += "; set type: " + k + " if this is the destination's section"
			}
			errs = append(errs, Errorf(path+"."+k, "%s", msg))
		}
	}
	if d == nil || cn.Type == "" {
		return errors.Join(errs...) // Validate reports a missing type
	}
	if !slices.Contains(d.Types(), cn.Type) {
		msg := fmt.Sprintf("unknown destination type %q (known: %s)", cn.Type, strings.Join(d.Types(), ", "))
		if s := closest(cn.Type, d.Types()); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return errors.Join(append(errs, Errorf(path+".type", "%s", msg))...)
	}
	n, ok := cn.Rest[cn.Type]
	if !ok {
		n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	v, err := d.Decode(cn.Type, &n)
	if err != nil {
		errs = append(errs, Prefix(path+"."+cn.Type, err))
	}
	cn.Destination = v
	return errors.Join(errs...)
}

func syntaxError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return locate(name, nil, err)
	}
	fe := &FieldError{File: name, Msg: err.Error()}
	if m := regexp.MustCompile(`^yaml: line (\d+): (.*)$`).FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML syntax: " + m[2]
	}
	return fe
}

// locate fills in file, line and column of every FieldError from the
// document, and sorts them by line.
func locate(name string, root *yaml.Node, err error) error {
	fes := FieldErrors(err)
	for _, fe := range fes {
		fe.File = name
		if fe.Line == 0 && root != nil {
			n := nodeAt(root, fe.Path)
			if strings.HasPrefix(fe.Msg, "unknown field") {
				n = keyNodeAt(root, fe.Path) // point at the misspelt key itself
			}
			if n != nil {
				fe.Line, fe.Column = n.Line, n.Column
			}
		}
	}
	slices.SortStableFunc(fes, func(a, b *FieldError) int { return a.Line - b.Line })
	out := make([]error, len(fes))
	for i, fe := range fes {
		out[i] = fe
	}
	return errors.Join(out...)
}
