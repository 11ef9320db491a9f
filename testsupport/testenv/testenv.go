// Package testenv starts what an end-to-end test of Firehose needs: an
// embedded broker on a free loopback port, a config file naming it, and
// the topology that config describes.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/topology"
)

// Env is a running broker with a config for it.
type Env struct {
	t      testing.TB
	Broker *embedded.Broker
	Config *config.Config
	Path   string // the config file
}

// New starts a broker, writes the config (a kafka section naming the
// broker, then body) to a file, loads it with lookup for ${VAR} (nil: no
// variables) and applies its topology. Everything stops when the test ends.
func New(t testing.TB, body string, lookup config.LookupFunc) *Env {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	path := filepath.Join(t.TempDir(), "firehose.yaml")
	doc := fmt.Sprintf("kafka: {brokers: [%q]}\n%s", b.Addr, body)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	cfg, err := config.Load(path, config.Options{Lookup: lookup, Destinations: destinations.Registry{}})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Broker: b, Config: cfg, Path: path}
	cl := e.Client()
	plan, err := topology.MakePlan(context.Background(), cl, topology.Specs(cfg.Topology))
	if err == nil {
		err = plan.Apply(context.Background(), cl)
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Client returns a client of the broker, closed when the test ends.
func (e *Env) Client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Broker.Addr)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}
