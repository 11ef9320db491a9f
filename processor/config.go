package processor

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"time"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/topology"
)

// Config is the processor section: the stage from the raw topic to the events topic.
type Config struct {
	Enabled       *bool             `yaml:"enabled"`         // default true
	Group         string            `yaml:"group"`           // default firehose-processor
	MaxEventBytes yamlconf.ByteSize `yaml:"max_event_bytes"` // default 1 MiB; larger events go to the DLQ
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
	Mask   MaskConfig    `yaml:"mask"`
	// Profiles coalesces profile property changes and evaluates segments;
	// off unless event_types or resource_types is set.
	Profiles ProfilesConfig `yaml:"profiles"`
}

// ProfilesConfig is processor.profiles: it turns a stream of profile property changes into one
// profile.updated event per changed profile per CoalesceInterval, and
// evaluates Segments on profiles at rest (no change for RestInterval),
// emitting profile.segments_changed when membership changed.
type ProfilesConfig struct {
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
	MaxBytes      yamlconf.ByteSize `yaml:"max_bytes"`
	MaxProperties int               `yaml:"max_properties"`
}

// The defaults of Profiles.MaxBytes and MaxProperties.
const (
	DefaultProfileMaxBytes      = 1 << 20
	DefaultProfileMaxProperties = 1000
)

// SetBounds sets MaxBytes and MaxProperties to their defaults where zero.
func (p *ProfilesConfig) SetBounds() {
	if p.MaxBytes == 0 {
		p.MaxBytes = DefaultProfileMaxBytes
	}
	if p.MaxProperties == 0 {
		p.MaxProperties = DefaultProfileMaxProperties
	}
}

// Enabled reports whether the profiles stage runs.
func (p ProfilesConfig) Enabled() bool { return len(p.EventTypes) > 0 || len(p.ResourceTypes) > 0 }

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

// IsEnabled reports whether the processor runs.
func (p Config) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// DefaultMaxEventBytes is processor.max_event_bytes by default.
const DefaultMaxEventBytes = 1 << 20

// Defaults fills the fields left empty.
func (c *Config) Defaults() {
	if pr := &c.Profiles; pr.Enabled() {
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
	if c.Group == "" {
		c.Group = "firehose-processor"
	}
	if c.TransactionalID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		c.TransactionalID = "firehose-processor-" + host
	}
	if c.Dedupe.TTL == 0 {
		c.Dedupe.TTL = 72 * time.Hour
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
}

// Stateful reports whether a stage keeps state in the state topic, which
// must then be partitioned as the raw topic is.
func (c Config) Stateful() bool { return c.Dedupe.IsEnabled() || c.Profiles.Enabled() }

// Validate reports every problem of the section, with paths relative to
// it; t is the topology it runs on (a profile must fit its topics).
func (c Config) Validate(t topology.Config) error {
	var v yamlconf.Problems
	for i, h := range c.Headers {
		if _, err := path.Match(h, ""); err != nil || h == "" {
			v.Add(fmt.Sprintf("headers[%d]", i), "must be a header name or glob such as x-*, got %q", h)
		}
	}
	if c.MaxEventBytes < 1024 {
		v.Add("max_event_bytes", "must be at least 1KiB, got %d", c.MaxEventBytes)
	}
	v.Join("filter", filter.Validate(c.Filter))
	if c.Profiles.Enabled() {
		// A profile's state record and its profile.updated hold its
		// properties, with room for the rest.
		limit := min(t.State.MaxRecordBytes(), t.Events.MaxRecordBytes()) - 64<<10
		v.Join("profiles", c.Profiles.validate(limit))
	} else if len(c.Profiles.Segments) > 0 {
		v.Add("profiles.event_types", "segments need profile changes: set event_types or resource_types")
	}
	if c.Dedupe.IsEnabled() && c.Dedupe.TTL < time.Minute {
		v.Add("dedupe.ttl", "must be at least 1m, got %s", c.Dedupe.TTL)
	}
	v.Join("mask", c.Mask.validate())
	return v.Err()
}

var segmentNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// validate checks an enabled profiles section; maxBytes is the most its
// max_bytes may be.
func (pr ProfilesConfig) validate(maxBytes int) error {
	var v yamlconf.Problems
	for key, globs := range map[string][]string{"event_types": pr.EventTypes, "resource_types": pr.ResourceTypes} {
		for i, g := range globs {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				v.Add(fmt.Sprintf("%s[%d]", key, i), "must be a name or glob such as profile.*, got %q", g)
			}
		}
	}
	if schemas.IsField(pr.PropertiesField) {
		v.Add("properties_field", "%q is a field of the event schema; name an unknown top-level field", pr.PropertiesField)
	}
	for key, d := range map[string]time.Duration{"coalesce_interval": pr.CoalesceInterval, "rest_interval": pr.RestInterval} {
		if d < 100*time.Millisecond {
			v.Add(key, "must be at least 100ms, got %s", d)
		}
	}
	if pr.MaxProperties < 1 {
		v.Add("max_properties", "must be at least 1, got %d", pr.MaxProperties)
	}
	if pr.TTL < pr.RestInterval {
		v.Add("ttl", "must be at least rest_interval (%s), got %s", pr.RestInterval, pr.TTL)
	}
	if pr.MaxBytes < 1024 || int(pr.MaxBytes) > maxBytes {
		v.Add("max_bytes", "must be between 1KiB and %d (the state and events topics' max.message.bytes less 64KiB), got %d", maxBytes, pr.MaxBytes)
	}
	seen := map[string]bool{}
	for i, s := range pr.Segments {
		sp := fmt.Sprintf("segments[%d]", i)
		if !segmentNameRe.MatchString(s.Name) {
			v.Add(sp+".name", "must be lower-case letters, digits, _ and - (at most 64), got %q", s.Name)
		}
		if seen[s.Name] {
			v.Add(sp+".name", "segment %q is defined twice", s.Name)
		}
		seen[s.Name] = true
		if _, err := filter.CompileSegment(s.Expr); err != nil {
			v.Add(sp+".expr", "%v", err)
		}
	}
	return v.Err()
}
