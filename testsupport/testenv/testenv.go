// Package testenv starts what an end-to-end test of Firehose needs: an
// embedded broker on a free loopback port, a config file naming it, and
// the topics a topology describes. It knows no config document, so the
// packages config assembles can use it in their own tests.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/topology"
)

// Env is a running broker.
type Env struct {
	t      testing.TB
	Broker *embedded.Broker
}

// Start starts a broker, stopped when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &Env{t: t, Broker: b}
}

// Document returns a config document: a kafka section naming the broker,
// then body.
func (e *Env) Document(body string) string {
	return fmt.Sprintf("kafka: {brokers: [%q]}\n%s", e.Broker.Addr, body)
}

// File writes Document(body) to a file in the test's directory and
// returns its path.
func (e *Env) File(body string) string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "firehose.yaml")
	if err := os.WriteFile(path, []byte(e.Document(body)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// Apply creates the topics of t.
func (e *Env) Apply(t topology.Config) {
	e.t.Helper()
	if err := topology.Ensure(context.Background(), e.Client(), t); err != nil {
		e.t.Fatal(err)
	}
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

// Loaded is a running broker with a config file for it, loaded.
type Loaded[C any] struct {
	*Env
	Config C
	Path   string // the config file
}

// Load starts a broker, writes body after a kafka section naming it to a
// file, loads the file with load (which returns the config and the
// topology it describes) and creates that topology's topics. Everything
// stops when the test ends.
func Load[C any](t testing.TB, body string, load func(path string) (C, topology.Config, error)) *Loaded[C] {
	t.Helper()
	e := Start(t)
	path := e.File(body)
	cfg, topo, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	e.Apply(topo)
	return &Loaded[C]{Env: e, Config: cfg, Path: path}
}

// CreateTopics creates topics (name: partitions, one replica each) through
// cl, failing tb on any error.
func CreateTopics(tb testing.TB, cl *kgo.Client, topics map[string]int32) {
	tb.Helper()
	adm := kadm.NewClient(cl)
	for topic, n := range topics {
		if _, err := adm.CreateTopic(context.Background(), n, 1, nil, topic); err != nil {
			tb.Fatal(err)
		}
	}
}
