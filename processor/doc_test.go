package processor

import (
	"errors"
	"testing"

	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/topology"
)

// testDoc is the part of firehose.yaml the processor runs on. config
// assembles the whole document above this package; its tests here read
// only these two sections, the way config does.
type testDoc struct {
	Topology  topology.Config `yaml:"topology"`
	Processor Config          `yaml:"processor"`
}

// Defaults fills both sections' defaults.
func (d *testDoc) Defaults() {
	d.Topology.Defaults()
	d.Processor.Defaults()
}

// options are the Options of a processor on d.
func (d testDoc) options() Options { return Options{Config: d.Processor, Topology: d.Topology} }

// parseDoc reads the topology and processor sections of a firehose.yaml
// document (the others are ignored), expanding ${VAR} with lookup (nil:
// none set), and fills and checks them as config.Parse does.
func parseDoc(tb testing.TB, doc string, lookup yamlconf.LookupFunc) *testDoc {
	tb.Helper()
	root, err := yamlconf.Parse("test.yaml", []byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	var errs []error
	yamlconf.ExpandNode(root, "", lookup, &errs)
	d := new(testDoc)
	errs = append(errs, root.Decode(d))
	d.Defaults()
	errs = append(errs, yamlconf.Prefix("topology", d.Topology.Validate()), yamlconf.Prefix("processor", d.Processor.Validate(d.Topology)))
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(yamlconf.Locate("test.yaml", root, err))
	}
	return d
}
