// Package configenv is testenv with a whole firehose.yaml: a broker, a
// config file naming it, loaded, and the topics it describes. It is apart
// from testenv because config sits above the packages whose tests use
// testenv.
package configenv

import (
	"testing"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/topology"
)

// Env is a running broker with a loaded config for it.
type Env = testenv.Loaded[*config.Config]

// New starts a broker, writes body after a kafka section naming it to a
// file, loads it with lookup for ${VAR} (nil: none set) and creates its
// topics. Everything stops when the test ends.
func New(t testing.TB, body string, lookup config.LookupFunc) *Env {
	t.Helper()
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	return testenv.Load(t, body, func(path string) (*config.Config, topology.Config, error) {
		cfg, err := config.Load(path, config.Options{Lookup: lookup})
		if err != nil {
			return nil, topology.Config{}, err
		}
		return cfg, cfg.Topology, nil
	})
}
