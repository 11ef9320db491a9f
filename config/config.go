// Package config assembles firehose.yaml from the sections the packages
// own: it reads the file, expands ${VAR}, keeps what one process uses
// (Scope), decodes each section into its package's type, fills the
// defaults and validates, and reports every problem at once with the
// file, line, column and field. Each section's type, defaults and checks
// live with the code it configures (processor.Config, connectors.Config,
// topology.Config, …); this package holds only what spans sections.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/processor"
	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/topology"
)

// Config is the whole of firehose.yaml.
type Config struct {
	Kafka      kafkaclient.Config  `yaml:"kafka"`
	Topology   topology.Config     `yaml:"topology"`
	Processor  processor.Config    `yaml:"processor"`
	Connectors []connectors.Config `yaml:"connectors"`
	API        pullapi.Config      `yaml:"api"`
	Tracing    tracing.Config      `yaml:"tracing"`
	// SchemaRegistry is needed by topics whose encoding is avro-confluent
	// or json-confluent.
	SchemaRegistry schemas.RegistryConfig `yaml:"schema_registry"`
	// MemoryLimit is the soft memory limit `firehose run` gives Go's
	// collector; 0 (the default) derives it from the connectors run (see
	// README, Memory). GOMEMLIMIT in the environment wins.
	MemoryLimit yamlconf.ByteSize `yaml:"memory_limit"`
}

// LookupFunc reads one environment variable; os.LookupEnv in production.
type LookupFunc = yamlconf.LookupFunc

// Options steer Load.
type Options struct {
	// Lookup reads environment variables for ${VAR}; default os.LookupEnv.
	Lookup LookupFunc
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

// Parse is Load for bytes already in memory; name is used in errors.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	root, err := yamlconf.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if root.Kind == 0 {
		return nil, &yamlconf.FieldError{File: name, Msg: "the file is empty"}
	}
	if n := expandedNodes(root, maxExpandedNodes); n > maxExpandedNodes {
		return nil, &yamlconf.FieldError{File: name, Msg: fmt.Sprintf("the file's aliases expand to more than %d values: an alias may repeat an anchored value, not multiply it", maxExpandedNodes)}
	}
	notRun := opts.Scope.prune(root)
	var errs []error
	yamlconf.ExpandNode(root, "", opts.Lookup, &errs)
	c := new(Config)
	if err := yamlconf.Decode(root, "", c); err != nil {
		errs = append(errs, err)
	}
	for i := range c.Connectors {
		cn := &c.Connectors[i]
		cn.NotRun = slices.Contains(notRun, cn.Name)
		if !cn.NotRun {
			errs = append(errs, yamlconf.Prefix(connectorPath(i), destinations.Defaults(cn)))
		}
	}
	c.Defaults()
	for i := range c.Connectors {
		if !c.Connectors[i].NotRun {
			errs = append(errs, yamlconf.Prefix(connectorPath(i), destinations.Decode(&c.Connectors[i])))
		}
	}
	errs = append(errs, c.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, yamlconf.Locate(name, root, err)
	}
	return c, nil
}

func connectorPath(i int) string { return fmt.Sprintf("connectors[%d]", i) }

// Defaults fills every field left empty, section by section.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	c.Topology.Defaults()
	c.Processor.Defaults()
	for i := range c.Connectors {
		if c.Connectors[i].Topic == "" {
			c.Connectors[i].Topic = c.Topology.Events.Name
		}
		c.Connectors[i].Defaults()
	}
	c.API.Defaults()
	c.Tracing.Defaults()
	c.SchemaRegistry.Defaults()
}

// Validate checks the whole config and returns every problem, each a
// *yamlconf.FieldError with its path: each section's own checks, then
// those that span sections. Destination sections are checked as they
// are decoded.
func (c *Config) Validate() error {
	var v yamlconf.Problems
	v.Join("kafka", c.Kafka.Validate())
	v.Join("topology", c.Topology.Validate())
	for _, key := range c.Topology.NeedsRegistry() {
		if c.SchemaRegistry.URL == "" {
			t := map[string]topology.Topic{"raw": c.Topology.Raw, "events": c.Topology.Events}[key]
			v.Add("topology."+key+".encoding", "%s needs schema_registry.url", t.Encoding)
		}
	}
	v.Join("schema_registry", c.SchemaRegistry.Validate())
	v.Join("processor", c.Processor.Validate(c.Topology))
	if c.Processor.Stateful() && c.Topology.State.Partitions != c.Topology.Raw.Partitions {
		v.Add("topology.state.partitions", "must equal topology.raw.partitions (%d): the state of raw partition N (dedupe, profiles) is kept in state partition N", c.Topology.Raw.Partitions)
	}
	names := map[string]int{}
	for i, cn := range c.Connectors {
		v.Join(connectorPath(i), cn.Validate())
		if j, dup := names[cn.Name]; dup && cn.Name != "" {
			v.Add(connectorPath(i)+".name", "%q is also the name of connectors[%d]", cn.Name, j)
		} else {
			names[cn.Name] = i
		}
	}
	v.Join("api", c.API.Validate())
	v.Join("tracing", c.Tracing.Validate())
	if c.MemoryLimit != 0 && c.MemoryLimit < 64<<20 {
		v.Add("memory_limit", "must be at least 64MiB (or 0 to derive it), got %d bytes", int64(c.MemoryLimit))
	}
	return v.Err()
}
