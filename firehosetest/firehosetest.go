// Package firehosetest starts a whole Firehose for a test suite: a
// Kafka-protocol broker (or the one the suite has), the processor, the
// connectors and the HTTP listener with the pull API, and helps produce
// events and read back what was delivered.
//
// Start runs Firehose in the test's process, so a suite needs no container
// engine:
//
//	func TestMyService(t *testing.T) {
//		fh := firehosetest.Start(t, firehosetest.Options{})
//		fh.Produce(t, `{"event_id":"e1","timestamp":"2026-01-01T00:00:00Z","account_id":"acc_1","resource_id":"lead_1","sequence":1,"event_type":"lead.created","lead_data":{"ssn":"123-45-6789"}}`)
//		got := fh.WaitDelivered(t, 1)
//		// got[0]["lead_data"].(map[string]any)["ssn"] == "***-**-6789"
//	}
//
// StartContainer runs the same in containers, with testcontainers-go.
package firehosetest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/topology"
)

// DefaultConfig is the config Start runs when Options.Config is empty: the
// processor with its default masking, and a file connector "files"
// writing NDJSON (uncompressed) under ${OUT} within 200 ms.
const DefaultConfig = `
kafka:
  brokers: ["${BROKER}"]
connectors:
  - name: files
    type: file
    batch: {max_events: 1000, max_age: 200ms}
    encoding: ndjson
    compression: none
    file: {dir: "${OUT}"}
`

// Options configure Start.
type Options struct {
	// Config is a Firehose config (YAML). ${BROKER} is the broker's
	// address and ${OUT} a fresh directory for file connectors. The api
	// section is set by Start. Default DefaultConfig.
	Config string
	// Broker is the address of a Kafka the suite already runs; empty
	// starts an embedded one on loopback. On a suite's broker each Start
	// gets topics, consumer groups and a transactional id of its own (its
	// config's names with a random suffix, in f.Config), so tests that
	// share the broker, in parallel or one after another, never see each
	// other's events or state.
	Broker string
	// Tokens are pull API tokens by account ("acc_1": "secret-token");
	// with none the pull API is off.
	Tokens map[string]string
	// Env are more variables for the config's ${VAR}s.
	Env map[string]string
}

// Firehose is a running Firehose.
type Firehose struct {
	// Broker is the Kafka address; HTTP the base URL of the listener
	// (pull API, /healthz, /readyz, /metrics); Out the directory of
	// ${OUT}.
	Broker, HTTP, Out string
	Config            *config.Config
	cl                *kgo.Client
}

// Start starts Firehose and returns once it is ready: every component
// joined its group. It stops when the test ends.
func Start(t testing.TB, o Options) *Firehose {
	t.Helper()
	f := &Firehose{Broker: o.Broker, Out: t.TempDir()}
	if f.Broker == "" {
		b, err := embedded.Start(embedded.Options{})
		if err != nil {
			t.Fatalf("firehosetest: %v", err)
		}
		t.Cleanup(b.Close)
		f.Broker = b.Addr
	}
	f.config(t, o, "127.0.0.1:0")
	f.applyTopology(t)
	cfg := f.Config
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{OnReady: func(addr string) { ready <- addr }, ShutdownTimeout: 10 * time.Second})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("firehosetest: firehose stopped with %v", err)
		}
	})
	select {
	case addr := <-ready:
		f.HTTP = "http://" + addr
	case err := <-done:
		t.Fatalf("firehosetest: firehose stopped at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("firehosetest: firehose not ready after 60s")
	}
	return f
}

// config returns the config to run, with its api section listening on
// listen, and the environment its ${VAR}s take; it parses it into
// f.Config and connects f's client to the broker.
func (f *Firehose) config(t testing.TB, o Options, listen string) (string, map[string]string) {
	t.Helper()
	doc := o.Config
	if doc == "" {
		doc = DefaultConfig
	}
	doc += "\napi:\n  listen: " + listen + "\n"
	env := map[string]string{"BROKER": f.Broker, "OUT": f.Out}
	for k, v := range o.Env {
		env[k] = v
	}
	if len(o.Tokens) > 0 {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		env["FIREHOSE_TEST_POSITION_KEY"] = hex.EncodeToString(key)
		doc += "  position_key: ${FIREHOSE_TEST_POSITION_KEY}\n  tokens:\n"
		accounts := make([]string, 0, len(o.Tokens))
		for a := range o.Tokens {
			accounts = append(accounts, a)
		}
		sort.Strings(accounts)
		for _, a := range accounts {
			sum := sha256.Sum256([]byte(o.Tokens[a]))
			doc += fmt.Sprintf("    - {account: %q, sha256: %s}\n", a, hex.EncodeToString(sum[:]))
		}
	}
	parse := func(doc string) *config.Config {
		cfg, err := config.Parse("firehosetest config", []byte(doc), config.Options{
			Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		})
		if err != nil {
			t.Fatalf("firehosetest: %v", err)
		}
		return cfg
	}
	cfg := parse(doc)
	if o.Broker != "" {
		var err error
		if doc, err = isolate(doc, cfg); err != nil {
			t.Fatalf("firehosetest: %v", err)
		}
		cfg = parse(doc)
	}
	f.Config = cfg
	var err error
	if f.cl, err = kgo.NewClient(kgo.SeedBrokers(f.Broker), kgo.DefaultProduceTopic(cfg.Topology.Raw.Name)); err != nil {
		t.Fatalf("firehosetest: %v", err)
	}
	t.Cleanup(f.cl.Close)
	return doc, env
}

// isolate returns doc with its topics, groups and transactional id named
// apart: each name of cfg (which has the defaults filled in) with a
// random suffix.
func isolate(doc string, cfg *config.Config) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return "", err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := "-" + hex.EncodeToString(b)
	section := func(parent map[string]any, key string) map[string]any {
		s, _ := parent[key].(map[string]any)
		if s == nil {
			s = map[string]any{}
			parent[key] = s
		}
		return s
	}
	topo := section(m, "topology")
	for key, t := range map[string]topology.Topic{"raw": cfg.Topology.Raw, "events": cfg.Topology.Events, "dlq": cfg.Topology.DLQ, "state": cfg.Topology.State} {
		section(topo, key)["name"] = t.Name + suffix
	}
	proc := section(m, "processor")
	proc["group"] = cfg.Processor.Group + suffix
	proc["transactional_id"] = cfg.Processor.TransactionalID + suffix
	if cns, ok := m["connectors"].([]any); ok {
		for i, c := range cns {
			if cn, ok := c.(map[string]any); ok && i < len(cfg.Connectors) {
				cn["group"] = cfg.Connectors[i].Group + suffix
			}
		}
	}
	out, err := yaml.Marshal(m)
	return string(out), err
}

// applyTopology creates the config's topics, as topology apply does.
func (f *Firehose) applyTopology(t testing.TB) {
	t.Helper()
	if err := topology.Ensure(context.Background(), f.cl, f.Config.Topology); err != nil {
		t.Fatalf("firehosetest: topology: %v", err)
	}
}

// Produce writes events (JSON objects) to the raw topic, each keyed by its
// resource_id, as a service would.
func (f *Firehose) Produce(t testing.TB, events ...string) {
	t.Helper()
	recs := make([]*kgo.Record, len(events))
	for i, e := range events {
		recs[i] = &kgo.Record{Key: []byte(gjson.Get(e, "resource_id").String()), Value: []byte(e)}
	}
	if err := f.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("firehosetest: produce: %v", err)
	}
}

// Delivered returns every event the file connectors delivered under Out so
// far, decoded, in file name order (per partition, by offset).
func (f *Firehose) Delivered(t testing.TB) []map[string]any {
	t.Helper()
	var files []string
	_ = filepath.WalkDir(f.Out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".ndjson") || strings.HasSuffix(p, ".ndjson.gz")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	var out []map[string]any
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("firehosetest: %v", err)
		}
		var r io.Reader = bytes.NewReader(data)
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("firehosetest: %s: %v", p, err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("firehosetest: %s: %v", p, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// WaitDelivered waits (up to a minute) until at least n events were
// delivered, and returns them.
func (f *Firehose) WaitDelivered(t testing.TB, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := f.Delivered(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("firehosetest: %d of %d events delivered after a minute", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pull asks the pull API for a page with a token, from a position (tail,
// top, or an earlier page's Meta.Position).
func (f *Firehose) Pull(t testing.TB, token, position string) *pullapi.Page {
	t.Helper()
	p, err := pullapi.GetPage(context.Background(), nil, f.HTTP, token, position, 0)
	if err != nil {
		t.Fatalf("firehosetest: pull: %v", err)
	}
	return p
}
