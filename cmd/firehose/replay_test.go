package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/ops"
	"github.com/firehose/firehose/testsupport/configenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// readEvents returns the event ids in every file under dir, per file.
func readEvents(t *testing.T, dir string) []string {
	return readEventsWhere(t, dir, func(string) bool { return true })
}

// readEventsWhere returns the event ids in the files under dir whose
// names keep says to read.
func readEventsWhere(t *testing.T, dir string, keep func(name string) bool) []string {
	t.Helper()
	var ids []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") || !keep(d.Name()) {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := sc.Text()
			i := strings.Index(l, `"event_id":"`) + len(`"event_id":"`)
			ids = append(ids, l[i:i+strings.IndexByte(l[i:], '"')])
		}
		return nil
	})
	return ids
}

// filesConnector writes a config with one file connector, "files",
// writing uncompressed NDJSON into out, and returns it, its path and a
// client producing to its events topic.
func filesConnector(t *testing.T, out string) (*config.Config, string, *kgo.Client) {
	t.Helper()
	e := configenv.New(t, fmt.Sprintf(`api: {listen: "off"}
connectors:
  - name: files
    type: file
    batch: {max_events: 40, max_age: 200ms}
    compression: none
    file: {dir: %q}
`, out), nil)
	return e.Config, e.Path, e.Client(kgo.DefaultProduceTopic(e.Config.Topology.Events.Name))
}

// TestReplayFromTimestampRedeliversFromThatTime delivers a stream, runs a
// replay job from a time in its middle beside the live worker, then
// resets the connector itself to that time (--reset), and checks that
// the files written by each hold exactly the events from that time on.
func TestReplayFromTimestampRedeliversFromThatTime(t *testing.T) {
	out := t.TempDir()
	cfg, path, cl := filesConnector(t, out)
	ctx := context.Background()
	now := time.Now()
	produce := func(from, to int, at time.Time) map[string]bool {
		ids := map[string]bool{}
		for i := from; i < to; i++ {
			res := fmt.Sprintf("lead_%d", i%13)
			id := fmt.Sprintf("e%04d", i)
			v := fmt.Sprintf(`{"event_id":%q,"timestamp":"2026-11-23T10:00:00Z","account_id":"acc_1","resource_id":%q,"sequence":%d,"event_type":"lead.created"}`, id, res, i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(res), Value: []byte(v), Timestamp: at.Add(time.Duration(i) * time.Millisecond)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			ids[id] = true
		}
		return ids
	}
	produce(0, 200, now.Add(-2*time.Hour))
	later := produce(200, 400, now.Add(-time.Hour))

	start := func() (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- app.Run(rctx, cfg, app.Options{Roles: []string{app.RoleConnector}}) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor := func(n int) {
		t.Helper()
		wait.Eventually(t, 30*time.Second, fmt.Sprintf("%d events delivered", n), func() bool { return len(readEvents(t, out)) >= n })
	}
	stop := start()
	waitFor(400)

	// A replay job runs beside the live worker: the command follows it
	// to the end; its files hold the range once, marked, and the live
	// files are untouched.
	from := now.Add(-90 * time.Minute).UTC().Format(time.RFC3339)
	o, err := run(t, "replay", "-c", path, "--connector", "files", "--from", from)
	if err != nil || !strings.Contains(o, "200 events will be delivered again") || !strings.Contains(o, "complete: 200 events") {
		t.Fatalf("replay job: %v\n%s", err, o)
	}
	id := o[strings.Index(o, "replay job ")+len("replay job ") : strings.Index(o, " submitted")]
	replayed, live := readEventsWhere(t, out, func(name string) bool { return strings.Contains(name, ".replay-"+id+".") }), readEventsWhere(t, out, func(name string) bool { return !strings.Contains(name, ".replay-") })
	if len(replayed) != 200 || len(live) != 400 {
		t.Fatalf("after the job: %d replayed events, %d live; want 200 and 400", len(replayed), len(live))
	}
	for _, id := range replayed {
		if !later[id] {
			t.Fatalf("replay job delivered %s, which is before %s", id, from)
		}
	}
	if l, err := run(t, "replay", "list", "-c", path); err != nil || !strings.Contains(l, id) || !strings.Contains(l, "complete") || !strings.Contains(l, "200/200") {
		t.Fatalf("replay list: %v\n%s", err, l)
	}
	if st, err := run(t, "status", "-c", path, "--interval", "10ms"); err != nil || !strings.Contains(st, "replay job "+id+"  complete  200/200 events") {
		t.Fatalf("status: %v\n%s", err, st)
	}

	// --reset moves the connector's own offsets: refused while a worker
	// runs, with what to do.
	_, err = run(t, "replay", "-c", path, "--connector", "files", "--from", from, "--reset")
	if err == nil || !strings.Contains(err.Error(), "running members") || !strings.Contains(err.Error(), "Stop them") {
		t.Fatalf("replay --reset with a running worker: %v", err)
	}
	stop()
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}

	dry, err := run(t, "replay", "-c", path, "--connector", "files", "--from", from, "--reset", "--dry-run")
	if err != nil || !strings.Contains(dry, "200 events will be delivered again") || !strings.Contains(dry, "dry run: nothing changed") {
		t.Fatalf("dry run: %v\n%s", err, dry)
	}
	if o, err := run(t, "replay", "-c", path, "--connector", "files", "--from", from, "--reset"); err != nil || !strings.Contains(o, "committed") {
		t.Fatalf("replay: %v\n%s", err, o)
	}

	// status shows what waits: 200 events, the oldest an hour old.
	status := func() ops.GroupStatus {
		t.Helper()
		o, err := run(t, "status", "-c", path, "--json", "--interval", "100ms")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, o)
		}
		var st []ops.GroupStatus
		if err := json.Unmarshal([]byte(o), &st); err != nil {
			t.Fatalf("%v\n%s", err, o)
		}
		for _, g := range st {
			if g.Name == "files" {
				return g
			}
		}
		t.Fatalf("no connector files in status:\n%s", o)
		return ops.GroupStatus{}
	}
	if g := status(); g.Lag != 200 || len(g.Members) != 0 || g.OldestWaitingSeconds < 3500 || g.OldestWaitingSeconds > 3700 {
		t.Fatalf("status after the replay: %+v", g)
	}

	stop = start()
	defer stop()
	waitFor(200)
	newer := produce(400, 420, time.Now())
	waitFor(220)
	wait.Consistently(t, 500*time.Millisecond, "no more events delivered", func() bool { return len(readEvents(t, out)) == 220 })
	got := readEvents(t, out)
	if g := status(); g.Lag != 0 || len(g.Members) != 1 || g.OldestWaitingSeconds != 0 {
		t.Fatalf("status after the catch-up: %+v", g)
	}
	want := map[string]bool{}
	for id := range later {
		want[id] = true
	}
	for id := range newer {
		want[id] = true
	}
	seen := map[string]bool{}
	for _, id := range got {
		if !want[id] || seen[id] {
			t.Fatalf("after the replay, %s arrived (wanted: once, only events from %s on)", id, from)
		}
		seen[id] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("after the replay %d events arrived, want %d", len(seen), len(want))
	}
}

// firehose replay --from-archive reads a file connector's own objects
// back for a time range and delivers those events again as a job.
func TestReplayFromArchive(t *testing.T) {
	out := t.TempDir()
	cfg, path, cl := filesConnector(t, out)
	ctx := context.Background()
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 300 {
		res := fmt.Sprintf("lead_%d", i%13)
		v := fmt.Sprintf(`{"event_id":"e%04d","timestamp":%q,"account_id":"acc_1","resource_id":%q,"sequence":%d,"event_type":"lead.created"}`,
			i, base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), res, i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(res), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx, cfg, app.Options{Roles: []string{app.RoleConnector}}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	wait.Eventually(t, 30*time.Second, "300 events delivered", func() bool { return len(readEvents(t, out)) == 300 })

	// Events 100 to 199: from 11:40 up to 13:20.
	o, err := run(t, "replay", "-c", path, "--connector", "files", "--from-archive", out,
		"--from", base.Add(100*time.Minute).Format(time.RFC3339), "--to", base.Add(200*time.Minute).Format(time.RFC3339))
	if err != nil || !strings.Contains(o, "100 events in range") || !strings.Contains(o, "complete: 100 events") {
		t.Fatalf("replay --from-archive: %v\n%s", err, o)
	}
	id := o[strings.Index(o, "replay job ")+len("replay job ") : strings.Index(o, " submitted")]
	got := readEventsWhere(t, out, func(name string) bool { return strings.Contains(name, ".replay-"+id+".") })
	seen := map[string]bool{}
	for _, ev := range got {
		var n int
		fmt.Sscanf(ev, "e%04d", &n)
		if n < 100 || n >= 200 || seen[ev] {
			t.Fatalf("the job delivered %s (want e0100 to e0199, once each)", ev)
		}
		seen[ev] = true
	}
	if len(seen) != 100 || len(readEventsWhere(t, out, func(name string) bool { return !strings.Contains(name, ".replay-") })) != 300 {
		t.Fatalf("%d events delivered again; the live files changed", len(seen))
	}
}
