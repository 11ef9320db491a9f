// Package integration holds end-to-end suites: a real Kafka-protocol
// broker (kfake) on loopback, independent clients such as kcat, the real
// processor and connectors, and assertions on the bytes that arrive.
package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/topology"
)

// startBroker starts kfake on a free loopback port with the topology
// applied, and returns its address.
func startBroker(t *testing.T) *embedded.Broker {
	t.Helper()
	b := testenv.Start(t).Broker
	return b
}

// loadConfig parses a YAML config the way firehose does, with
// ${BROKER} and ${OUT} available.
func loadConfig(t *testing.T, yaml string, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), config.Options{
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func applyTopology(t *testing.T, cfg *config.Config) {
	t.Helper()
	if err := topology.Ensure(context.Background(), client(t, cfg), cfg.Topology); err != nil {
		t.Fatal(err)
	}
}

func client(t *testing.T, cfg *config.Config, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// kcatProduce pipes lines (key|value) into kcat, an independent Kafka
// client, so the test does not only check Firehose against itself.
func kcatProduce(t *testing.T, broker, topic string, lines [][]byte) {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed; `make test` installs it (apt-get install kcat)")
	}
	cmd := exec.Command(path, "-P", "-b", broker, "-t", topic, "-K", "|",
		"-X", "message.max.bytes=10000000", "-X", "enable.idempotence=true", "-X", "linger.ms=5")
	cmd.Stdin = bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n'))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, stderr.String())
	}
}

// outLine is one delivered event and where it was found.
type outLine struct {
	File      string
	Partition int
	First     int64
	Event     *schemas.Event
	Meta      map[string]any
}

var objRe = regexp.MustCompile(`\+(\d+)\+(\d{20})\.ndjson(\.gz)?$`)

// readOutput decodes every finished file under dir, in (partition, first
// offset) order, and every line in it.
func readOutput(t *testing.T, dir string) []outLine {
	t.Helper()
	type file struct {
		path  string
		part  int
		first int64
	}
	var files []file
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		m := objRe.FindStringSubmatch(p)
		if m == nil {
			t.Errorf("unexpected file name %s", p)
			return nil
		}
		part, _ := strconv.Atoi(m[1])
		first, _ := strconv.ParseInt(m[2], 10, 64)
		files = append(files, file{p, part, first})
		return nil
	})
	slices.SortFunc(files, func(a, b file) int {
		if a.part != b.part {
			return a.part - b.part
		}
		return int(a.first - b.first)
	})
	var out []outLine
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = bytes.NewReader(data)
		if strings.HasSuffix(f.path, ".gz") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("%s: %v", f.path, err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			e, err := schemas.JSON{}.Decode(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: line does not decode: %v\n%s", f.path, err, sc.Bytes())
			}
			var meta map[string]any
			if raw := e.Extra.Get("firehose_metadata"); raw != nil {
				_ = json.Unmarshal(raw, &meta)
			}
			out = append(out, outLine{File: f.path, Partition: f.part, First: f.first, Event: e, Meta: meta})
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
	}
	return out
}

// consumeAll reads a topic from the start until n records arrived.
func consumeAll(t *testing.T, cfg *config.Config, topic string, n int, d time.Duration) []*kgo.Record {
	t.Helper()
	cl := client(t, cfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s before timing out", len(out), n, topic)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// resourceKey names an event for comparisons.
func resourceKey(e *schemas.Event) string {
	return fmt.Sprintf("%s#%d#%s", e.ResourceID, e.Sequence, e.EventID)
}
