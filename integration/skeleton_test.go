package integration

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

const pipelineYAML = `
kafka:
  brokers: ["${BROKER}"]
processor:
  transactional_id: ${TXN_ID:-test-processor}
connectors:
  - name: files
    type: file
    batch: {max_events: 700, max_age: 300ms}
    file:
      dir: ${OUT}
      path: "events/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/"
api:
  listen: "off"
`

// runApp runs the given roles until the returned stop is called; stop
// waits for a clean exit.
func runApp(t *testing.T, cfg *config.Config, o app.Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		err = app.Run(ctx, cfg, o)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// makeInput returns n generated events as kcat lines (key|json), 2% of
// them exact duplicates, and the events the processor must emit: each
// resource's events with the duplicates removed, in input order.
func makeInput(n int, seed uint64) (lines [][]byte, unique []*schemas.Event) {
	g := generator.New(seed, 300)
	g.DuplicateRate = 0.02
	last := map[string]int64{}
	for range n {
		e := g.Next()
		b, _ := schemas.JSON{}.Append(nil, e)
		lines = append(lines, append([]byte(e.ResourceID+"|"), b...))
		if prev, ok := last[e.ResourceID]; !ok || e.Sequence > prev {
			unique = append(unique, e)
			last[e.ResourceID] = e.Sequence
		}
	}
	return lines, unique
}

func TestWalkingSkeletonKcatToFiles(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	cfg := loadConfig(t, pipelineYAML, map[string]string{"BROKER": b.Addr, "OUT": out})
	applyTopology(t, cfg)

	lines, events := makeInput(10000, 42)
	// Bad input among the good: not JSON, a schema violation, and an
	// event of 2 MB, over the 1 MiB limit. The stream must go on past
	// each of them.
	big := strings.Replace(string(lines[5][len("lead_000000|"):]), `"lead_data":{`, `"lead_data":{"blob":"`+strings.Repeat("x", 2<<20)+`",`, 1)
	bad := [][]byte{
		[]byte(`lead_bad1|{"event_id": "evt_x", "timestamp": `),
		[]byte(`lead_bad2|{"event_id":"evt_y","timestamp":"2024-01-15T14:30:45.234Z","resource_id":"lead_bad2","sequence":"seven","event_type":"lead.created"}`),
		[]byte("lead_bad3|" + big),
	}
	var all [][]byte
	all = append(all, lines[:3000]...)
	all = append(all, bad[0])
	all = append(all, lines[3000:6000]...)
	all = append(all, bad[1], bad[2])
	all = append(all, lines[6000:]...)
	kcatProduce(t, b.Addr, cfg.Topology.Raw.Name, all)

	runApp(t, cfg, app.Options{})

	if len(events) > 9900 || len(events) < 9700 {
		t.Fatalf("%d unique events of 10000; the input should hold about 2%% duplicates", len(events))
	}
	wait.Eventually(t, 60*time.Second, "every unique event in files", func() bool { return len(readOutput(t, out)) >= len(events) })
	got := readOutput(t, out)
	if len(got) != len(events) {
		t.Fatalf("delivered %d events, sent %d valid unique ones", len(got), len(events))
	}
	checkExactPerResource(t, events, got)
	for _, l := range got {
		if !strings.HasPrefix(l.File, out+"/events/year=") || !strings.Contains(l.File, "/hour=") {
			t.Fatalf("file %s does not follow the path template", l.File)
		}
		if l.Meta["batch_id"] == nil || l.Meta["delivered_at"] == nil {
			t.Fatalf("event without firehose_metadata: %+v", l.Meta)
		}
	}

	dead := consumeAll(t, cfg, cfg.Topology.DLQ.Name, 3, 20*time.Second)
	classes := map[string]string{}
	for _, r := range dead {
		classes[string(r.Key)] = dlq.Header(r, dlq.HeaderClass) + ": " + dlq.Header(r, dlq.HeaderMessage)
		if dlq.Header(r, dlq.HeaderSourceTopic) != cfg.Topology.Raw.Name || dlq.Header(r, dlq.HeaderSourceOffset) == "" {
			t.Errorf("dead letter without its source: %v", r.Headers)
		}
	}
	for key, want := range map[string]string{
		"lead_bad1": "decode: ",
		"lead_bad2": "invalid: account_id: required; sequence: must be an integer, got string",
		"lead_bad3": "oversize: event is 2",
	} {
		if !strings.HasPrefix(classes[key], want) {
			t.Errorf("DLQ reason of %s = %q, want prefix %q", key, classes[key], want)
		}
	}
	for _, r := range dead {
		if string(r.Key) == "lead_bad3" && !bytes.Equal(r.Value, []byte(big)) {
			t.Errorf("the oversize event's original bytes are not the DLQ value (%d bytes)", len(r.Value))
		}
	}
}

// checkExactPerResource asserts that, per resource, the delivered events
// are exactly the sent ones in the sent order.
func checkExactPerResource(t *testing.T, sent []*schemas.Event, got []outLine) {
	t.Helper()
	want := map[string][]string{}
	for _, e := range sent {
		want[e.ResourceID] = append(want[e.ResourceID], resourceKey(e))
	}
	have := map[string][]string{}
	for _, l := range got {
		have[l.Event.ResourceID] = append(have[l.Event.ResourceID], resourceKey(l.Event))
	}
	for r, w := range want {
		if !slices.Equal(w, have[r]) {
			t.Fatalf("resource %s: delivered\n%v\nwant\n%v", r, have[r], w)
		}
	}
	if len(have) != len(want) {
		t.Fatalf("delivered %d resources, sent %d", len(have), len(want))
	}
}

func TestConnectorCrashLosesNothing(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	cfg := loadConfig(t, strings.Replace(pipelineYAML, "max_events: 700, max_age: 300ms", "max_events: 150, max_age: 200ms", 1),
		map[string]string{"BROKER": b.Addr, "OUT": out})
	applyTopology(t, cfg)
	lines, events := makeInput(10000, 7)
	kcatProduce(t, b.Addr, cfg.Topology.Raw.Name, lines)
	runApp(t, cfg, app.Options{Roles: []string{app.RoleProcessor}})

	// First run: batches close only by count (150 events), so when the
	// stream is drained each partition still holds open, undelivered
	// batches (one per lane: files keep no order, so one lane). Then a
	// crash: the context ends, nothing is flushed, nothing more is
	// committed.
	slow := *cfg
	slow.Connectors = slices.Clone(cfg.Connectors)
	slow.Connectors[0].Batch.MaxAge = time.Hour
	crash := runApp(t, &slow, app.Options{Roles: []string{app.RoleConnector}, ShutdownTimeout: -1})
	wait.Eventually(t, 60*time.Second, "all full batches delivered", func() bool { return len(readOutput(t, out)) >= len(events)-6*150 })
	crash()
	before := len(readOutput(t, out))
	if before >= len(events) {
		t.Fatalf("all %d events were delivered before the crash; the test needs open batches", before)
	}

	runApp(t, cfg, app.Options{Roles: []string{app.RoleConnector}})
	want := map[string]bool{}
	for _, e := range events {
		want[resourceKey(e)] = true
	}
	missing := func() int {
		seen := map[string]bool{}
		for _, l := range readOutput(t, out) {
			seen[resourceKey(l.Event)] = true
		}
		n := 0
		for k := range want {
			if !seen[k] {
				n++
			}
		}
		return n
	}
	wait.Eventually(t, 60*time.Second, "every event delivered after the restart", func() bool { return missing() == 0 })
	got := readOutput(t, out)
	t.Logf("%d events delivered before the crash, %d lines in all after the restart for %d events sent", before, len(got), len(events))

	// Within each file, each resource's events keep their order.
	last := map[string]int64{}
	for i, l := range got {
		if i > 0 && got[i-1].File != l.File {
			clear(last)
		}
		if prev, ok := last[l.Event.ResourceID]; ok && l.Event.Sequence < prev {
			t.Fatalf("%s: %s sequence %d after %d", l.File, l.Event.ResourceID, l.Event.Sequence, prev)
		}
		last[l.Event.ResourceID] = l.Event.Sequence
	}
}
