package connectors_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/wait"
)

// holdFirst is a file sink that never finishes a batch starting at
// offset 0: later batches of the partition are stored while the first is
// in flight, so the commit point stays at 0.
type holdFirst struct{ *file.Sink }

func (h holdFirst) Deliver(ctx context.Context, b *connectors.Batch) error {
	if b.FirstOffset == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Sink.Deliver(ctx, b)
}

// eachStored calls fn with each event of the gzip NDJSON objects under
// dir, in each object's order: the object's path, the event's line from
// 0, and the event.
func eachStored(t *testing.T, dir string, fn func(path string, line int, e *schemas.Event) error) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ndjson.gz") {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for line := 0; sc.Scan(); line++ {
			e, err := schemas.JSON{}.Decode(sc.Bytes())
			if err != nil {
				return fmt.Errorf("%s line %d: %w", p, line+1, err)
			}
			if err := fn(p, line, e); err != nil {
				return err
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// eventsInFiles counts each event's occurrences in the NDJSON files
// under dir, and returns the objects too.
func eventsInFiles(t *testing.T, dir string) (map[string]int, int) {
	t.Helper()
	seen, objects := map[string]int{}, 0
	eachStored(t, dir, func(_ string, line int, e *schemas.Event) error {
		if line == 0 {
			objects++
		}
		seen[e.EventID]++
		return nil
	})
	return seen, objects
}

// A crash with a later batch of a partition stored and the first not yet
// acknowledged, then a restart that would cut the partition otherwise
// (here: other bounds, as batches closed by max_age are cut by when the
// records came): the restarted worker cuts the batches the commit
// recorded, so every event is in exactly one object. Before the cuts were
// recorded, the restart's first batch took in the stored second batch's
// events and each of them was in two objects.
func TestEveryEventInOneObjectAfterACrash(t *testing.T) {
	evs := connectortest.Events(21, 600)
	br, _, _ := eventsBroker(t, 1, evs)
	dir := t.TempDir()
	run := func(maxEvents int, hold bool, crash bool) {
		t.Helper()
		fc := file.Config{Dir: dir}
		fc.Defaults()
		sink, err := file.New(fc)
		if err != nil {
			t.Fatal(err)
		}
		var s connectors.Sink = sink
		if hold {
			s = holdFirst{sink}
		}
		shutdown := 10 * time.Second
		if crash {
			shutdown = -1
		}
		w, err := connectors.New(connectors.Options{
			Connector: connectors.Config{Name: "lake", Topic: "events", Group: "lake", MaxInFlight: 8,
				Batch: connectors.Bounds{MaxEvents: maxEvents, MaxAge: time.Hour}},
			DLQTopic: "events.dlq", EventsEncoding: "json", Sink: s,
			Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)}, ShutdownTimeout: shutdown,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		if crash {
			// Batches 100-199 … 500-599 stored, 0-99 held.
			wait.Eventually(t, 30*time.Second, "five batches stored", func() bool { return w.Stats().Batches.Load() >= 5 })
		} else {
			wait.Eventually(t, 30*time.Second, "every event delivered", func() bool {
				seen, _ := eventsInFiles(t, dir)
				return len(seen) == len(evs)
			})
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run(100, true, true)
	run(150, false, false)
	seen, objects := eventsInFiles(t, dir)
	twice := 0
	for _, n := range seen {
		if n > 1 {
			twice++
		}
	}
	if len(seen) != len(evs) || twice > 0 {
		t.Fatalf("%d of %d events in the files, %d of them in more than one object (%d objects)", len(seen), len(evs), twice, objects)
	}
	if objects != 6 {
		t.Fatalf("%d objects; the recorded cuts make 6 of 100 events", objects)
	}
}
