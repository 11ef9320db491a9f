package integration

import (
	"context"
	"encoding/binary"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

// A producer registers schemas built to exhaust a reader (an array of
// arrays of null, a recursive record) and writes values under them, and
// an id the registry refuses to read (403): with the process held to a
// memory limit, every bomb is dead-lettered with its reason, the refused
// id is not retried before every poll, the events around them are
// delivered, and the heap stays under half the limit. Before the checks,
// the first bomb took the processor to 2.1 GB and a fatal out-of-memory, the second
// to a fatal stack overflow, and the 403 stopped every partition.
func TestSchemaBombsUnderAMemoryLimit(t *testing.T) {
	const limit = 512 << 20
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
	var peak atomic.Uint64
	// The heap's objects include the garbage earlier tests of this
	// process left (CI saw 262 MiB before this test allocated much):
	// collect it, so that the peak is this test's.
	runtime.GC()
	stopWatch := watchHeap(&peak)
	defer stopWatch()

	b := startBroker(t)
	out := t.TempDir()
	fake := srfake.New(srfake.WithAuth("Basic ZmlyZWhvc2U6czNjcjN0")) // firehose:s3cr3t
	t.Cleanup(fake.Close)
	cfg := loadConfig(t, registryYAML, map[string]string{"BROKER": b.Addr, "OUT": out, "REGISTRY": fake.URL(), "REGISTRY_PASSWORD": "s3cr3t"})
	applyTopology(t, cfg)
	ctx := context.Background()
	reg, err := sr.NewClient(sr.URLs(fake.URL()), sr.BasicAuth("firehose", "s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	register := func(subject, text string) int {
		ss, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	zz := func(b []byte, n int64) []byte { return binary.AppendUvarint(b, uint64(n<<1^(n>>63))) }
	frame := func(id int, payload []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), payload...)
	}

	nulls := register("nulls-value", `{"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":{"type":"array","items":"null"}}}]}`)
	var nullsBomb []byte
	nullsBomb = zz(nullsBomb, 250)
	for range 250 {
		nullsBomb = zz(zz(nullsBomb, 1<<31-1), 0)
	}
	nullsBomb = zz(nullsBomb, 0)
	node := register("node-value", `{"type":"record","name":"Node","fields":[{"name":"n","type":["null","Node"]}]}`)
	nodeBomb := make([]byte, 1000_000)
	for i := range nodeBomb {
		nodeBomb[i] = 2
	}
	nodeBomb[len(nodeBomb)-1] = 0
	eventID := register("events.raw-value", schemas.AvroSchema)
	refused := eventID + 1000
	var asked atomic.Int32
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/schemas/ids/"+strconv.Itoa(refused)) {
			asked.Add(1)
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error_code":40301,"message":"User is denied operation Read on Subject: private-value"}`))
			return true
		}
		return false
	})

	g := generator.New(11, 10)
	var good []*schemas.Event
	goodRecord := func() *kgo.Record {
		e := g.Next()
		e.Extra = nil
		v, err := schemas.Avro{}.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		good = append(good, e)
		return &kgo.Record{Topic: cfg.Topology.Raw.Name, Key: []byte(e.ResourceID), Value: frame(eventID, v[10:])}
	}
	recs := []*kgo.Record{
		goodRecord(),
		{Topic: cfg.Topology.Raw.Name, Key: []byte("bomb_nulls"), Value: frame(nulls, nullsBomb)},
		{Topic: cfg.Topology.Raw.Name, Key: []byte("bomb_node"), Value: frame(node, nodeBomb)},
		{Topic: cfg.Topology.Raw.Name, Key: []byte("refused"), Value: frame(refused, []byte{0})},
		{Topic: cfg.Topology.Raw.Name, Key: []byte("refused"), Value: frame(refused, []byte{2})},
		goodRecord(),
	}
	prod := client(t, cfg, kgo.DefaultProduceTopic(cfg.Topology.Raw.Name), kgo.ProducerBatchMaxBytes(4<<20))
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runApp(t, cfg, app.Options{})

	wait.Eventually(t, 60*time.Second, "the events around the bombs in files", func() bool { return len(readOutput(t, out)) >= len(good) })
	reasons := map[string][]string{}
	for _, r := range consumeAll(t, cfg, cfg.Topology.DLQ.Name, 4, 30*time.Second) {
		reasons[string(r.Key)] = append(reasons[string(r.Key)], dlq.Header(r, dlq.HeaderClass)+": "+dlq.Header(r, dlq.HeaderMessage))
	}
	for key, want := range map[string]string{
		"bomb_nulls": "items take no bytes",
		"bomb_node":  "record Node contains itself",
		"refused":    "403 User is denied operation Read",
	} {
		if len(reasons[key]) == 0 || !strings.HasPrefix(reasons[key][0], "decode: ") || !strings.Contains(reasons[key][0], want) {
			t.Errorf("%s dead-lettered as %q, want a decode reason with %q", key, reasons[key], want)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the registry was asked for the refused id %d times, want once", n)
	}
	if p := peak.Load(); p > limit/2 {
		t.Errorf("the heap reached %d MiB under a %d MiB limit", p>>20, limit>>20)
	}
}

// watchHeap samples the live heap every few milliseconds into peak until
// the returned stop is called.
func watchHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
