package config

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// Scope names the parts of a config one process uses. Only they are read
// in full: ${VAR} expansion and validation see nothing else, so a
// connector's worker needs only its own secrets in its environment, and
// status or replay need no API position key. A nil Scope reads all
// (firehose validate, firehose dev).
type Scope struct {
	// Processor: the processor section in full. Without it only
	// processor.enabled, group and max_event_bytes are read.
	Processor bool
	// API: the pull API's position_key, tokens and tokens_file. The
	// listener's settings (api.listen and the limits) are always read.
	API bool
	// Connectors are the connectors run, by name; nil runs all. Of the
	// others only name, type, enabled, topic and group are read, and they
	// are marked NotRun.
	Connectors []string
}

// keep lists what is read of a section outside the scope.
var (
	keepProcessor = []string{"enabled", "group", "max_event_bytes"}
	keepAPIOmit   = []string{"position_key", "tokens", "tokens_file"}
	keepConnector = []string{"name", "type", "enabled", "topic", "group"}
)

// prune removes from the document what s does not use, before expansion,
// and returns the names of the connectors cut to their identity.
func (s *Scope) prune(root *yaml.Node) []string {
	if s == nil || root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	top := root.Content[0]
	var notRun []string
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i].Value, top.Content[i+1]
		switch {
		case k == "processor" && !s.Processor:
			filterMap(v, func(key string) bool { return slices.Contains(keepProcessor, key) })
		case k == "api" && !s.API:
			filterMap(v, func(key string) bool { return !slices.Contains(keepAPIOmit, key) })
		case k == "connectors" && s.Connectors != nil && v.Kind == yaml.SequenceNode:
			for _, c := range v.Content {
				if c.Kind != yaml.MappingNode {
					continue
				}
				name := mapValue(c, "name")
				if slices.Contains(s.Connectors, name) {
					continue
				}
				filterMap(c, func(key string) bool { return slices.Contains(keepConnector, key) })
				notRun = append(notRun, name)
			}
		}
	}
	return notRun
}

// filterMap keeps the entries of a mapping whose key passes keep.
func filterMap(m *yaml.Node, keep func(string) bool) {
	if m.Kind != yaml.MappingNode {
		return
	}
	var out []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if keep(m.Content[i].Value) {
			out = append(out, m.Content[i], m.Content[i+1])
		}
	}
	m.Content = out
}

func mapValue(m *yaml.Node, key string) string {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1].Value
		}
	}
	return ""
}
