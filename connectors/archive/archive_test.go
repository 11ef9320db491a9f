package archive_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/archive"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

func sameEvents(t *testing.T, what string, got, want []*schemas.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events back, %d written", what, len(got), len(want))
	}
	for i := range want {
		g, _ := schemas.JSON{}.Append(nil, got[i])
		w, _ := schemas.JSON{}.Append(nil, want[i])
		if !bytes.Equal(g, w) {
			t.Fatalf("%s: event %d came back as\n%s\nwritten as\n%s", what, i, g, w)
		}
	}
}

// Every encoding and compression an object destination writes reads back
// as the events written, without their firehose_metadata.
func TestDecodeEveryEncoding(t *testing.T) {
	evs := connectortest.Events(41, 300)
	for _, enc := range connectortest.Encodings {
		for _, comp := range connectortest.Compressions {
			b := connectortest.MakeBatch(t, 0, 0, evs, enc, comp)
			if !archive.Readable(b.Key) {
				t.Fatalf("%s is not readable", b.Key)
			}
			got, err := archive.Decode(b.Key, b.Body)
			if err != nil {
				t.Fatalf("%s: %v", b.Key, err)
			}
			sameEvents(t, b.Key, got, evs)
		}
	}
	if archive.Readable("x/events+0+00000000000000000000.replay-0a1b2c3d.ndjson.gz") || archive.Readable("x/notes.txt") {
		t.Fatal("a replay job's object, or a file Firehose does not write, is readable")
	}
	if _, err := archive.Decode("a.ndjson.gz", []byte("not gzip")); err == nil {
		t.Fatal("a corrupt object decoded")
	}
}

// A backfill reads an archive (objects of several encodings), produces
// the events of a time range addressed to a replay job, and the
// connector's job delivers exactly those again, marked; its live worker
// delivers none of them.
func TestBackfillDeliversAnArchive(t *testing.T) {
	defer func(d time.Duration) { connectors.ReplayPoll = d }(connectors.ReplayPoll)
	connectors.ReplayPoll = 50 * time.Millisecond
	evs := connectortest.Events(42, 600) // a millisecond apart
	arch := t.TempDir()
	for i, enc := range []string{"ndjson", "json", "avro", "parquet"} {
		comp := map[string]string{"ndjson": "gzip", "json": "zstd", "avro": "none", "parquet": "snappy"}[enc]
		b := connectortest.MakeBatch(t, int32(i), 0, evs[i*150:(i+1)*150], enc, comp)
		p := filepath.Join(arch, filepath.FromSlash(b.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	from, to := evs[100].Timestamp, evs[500].Timestamp // events 100 to 499

	br := testenv.Start(t).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.CreateTopics(t, cl, map[string]int32{"events": 3, "events.dlq": 1})
	out := t.TempDir()
	fc := file.Config{Dir: out}
	fc.Defaults()
	sink, err := file.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	o := connectors.Options{
		Connector: connectors.Config{Name: "lake", Topic: "events", Group: "lake", Encoding: "ndjson", Compression: "gzip",
			Batch: connectors.Bounds{MaxEvents: 100, MaxAge: 50 * time.Millisecond}},
		DLQTopic: "events.dlq", EventsEncoding: "json", Sink: sink, Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)},
	}
	live, err := connectors.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- live.Run(ctx) }()
	r, err := live.Replays(o.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- r.Run(ctx) }()

	objects := 0
	id, n, err := archive.Backfill(ctx, cl, archive.Dir(arch), o.Connector, from, to, func(string, int) { objects++ })
	if err != nil || n != 400 || objects != 4 {
		t.Fatalf("backfill: %s, %d events from %d objects, %v", id, n, objects, err)
	}
	wait.Eventually(t, 30*time.Second, "the job complete", func() bool {
		jobs, err := connectors.ListReplays(ctx, adm, "lake")
		return err == nil && len(jobs) == 1 && jobs[0].ID == id && jobs[0].Complete() && jobs[0].Archive
	})
	cancel()
	<-done
	<-done

	var replayed, liveEvents []*schemas.Event
	names, err := archive.Dir(out).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		body, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		// Read past Readable, which leaves replay objects out, to see
		// the metadata too.
		if !strings.Contains(name, ".replay-"+id+".") {
			got, _ := archive.Decode(name, body)
			liveEvents = append(liveEvents, got...)
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(zr)
		lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
		if marked := bytes.Count(raw, []byte(`"replay":"`+id+`"`)); marked != len(lines) {
			t.Fatalf("%s: %d of %d events marked as the job's", name, marked, len(lines))
		}
		got, err := archive.Decode(strings.Replace(name, ".replay-"+id, "", 1), body)
		if err != nil {
			t.Fatal(err)
		}
		replayed = append(replayed, got...)
	}
	if len(liveEvents) != 0 {
		t.Fatalf("the live worker delivered %d of the backfilled events", len(liveEvents))
	}
	byID := map[string]*schemas.Event{}
	for _, e := range replayed {
		if byID[e.EventID] != nil {
			t.Fatalf("%s delivered twice", e.EventID)
		}
		byID[e.EventID] = e
	}
	var want, got []*schemas.Event
	for _, e := range evs[100:500] {
		want = append(want, e)
		got = append(got, byID[e.EventID])
		if byID[e.EventID] == nil {
			t.Fatalf("%s (in range) not delivered", e.EventID)
		}
	}
	if len(byID) != 400 {
		t.Fatalf("%d events delivered, want the 400 in range", len(byID))
	}
	sameEvents(t, "backfilled", got, want)
}

// An object that does not read is an error, never a panic.
func FuzzDecode(f *testing.F) {
	evs := connectortest.Events(43, 3)
	for i, enc := range connectortest.Encodings {
		b := connectortest.MakeBatch(f, 0, 0, evs, enc, connectortest.Compressions[i%len(connectortest.Compressions)])
		f.Add(b.Key, b.Body)
	}
	f.Add("a.ndjson", []byte("{\"event_id\":1}\n"))
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		evs, err := archive.Decode(name, body)
		if err == nil {
			for _, e := range evs {
				if e == nil {
					t.Fatal("a nil event")
				}
			}
		}
	})
}
