package iceberg_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/icebergtable"
	"github.com/firehose/firehose/transform"
)

// config is a table in a SQLite catalog and a local warehouse under dir.
func config(dir string) iceberg.Config {
	c := iceberg.Config{
		Catalog:        iceberg.Catalog{Type: "sql", URI: "sqlite://" + filepath.Join(dir, "catalog.db")},
		Warehouse:      "file://" + filepath.Join(dir, "warehouse"),
		CommitInterval: time.Second,
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

func open(t *testing.T, c iceberg.Config) *iceberg.Sink {
	t.Helper()
	s, err := iceberg.New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// readTable reads the table as an engine does (see icebergtable).
func readTable(t testing.TB, c iceberg.Config) icebergtable.Table {
	t.Helper()
	tb := icebergtable.Read(t, strings.TrimPrefix(c.Catalog.URI, "sqlite://"), c.Namespace, c.Table, "")
	if tb.Error != "" {
		t.Fatalf("read table: %s", tb.Error)
	}
	return tb
}

func rows(t testing.TB, tb icebergtable.Table) []map[string]any { return icebergtable.Rows(t, tb) }

// spread gives the events timestamps over three days, in order.
func spread(evs []*schemas.Event) {
	start := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)
	for i, e := range evs {
		e.Timestamp = start.Add(time.Duration(i) * 72 * time.Hour / time.Duration(len(evs)))
	}
}

func TestTableHoldsEveryEventOnce(t *testing.T) {
	dir := t.TempDir()
	c := config(dir)
	evs := connectortest.EventsOver(7, 40, 3000)
	spread(evs)
	sink := open(t, c)
	p := connectortest.StartPipeline(t, sink, evs, connectors.Config{
		Type: "iceberg", Encoding: "parquet", Compression: "zstd",
		Batch: connectors.Bounds{MaxEvents: 250, MaxAge: 200 * time.Millisecond},
	})
	p.Drained(t)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	tb := readTable(t, c)
	icebergtable.CheckOnce(t, tb, evs)
	offsets := map[[2]int64]bool{}
	for _, pos := range p.Offsets {
		offsets[[2]int64{int64(pos.Partition), pos.Offset}] = true
	}
	icebergtable.CheckRanges(t, tb, "suite", "events", offsets)
	if tb.FormatVersion != 2 || !slices.Contains(tb.Schema, "firehose_metadata") || !slices.Contains(tb.Schema, "metadata") {
		t.Fatalf("table format %d, columns %v", tb.FormatVersion, tb.Schema)
	}
	if len(tb.PartitionSpec) != 1 || tb.PartitionSpec[0]["transform"] != "day" || tb.PartitionSpec[0]["name"] != "timestamp_day" {
		t.Fatalf("partition spec %v, want day(timestamp)", tb.PartitionSpec)
	}
	st := sink.Stats()
	if st.Commits.Load() == 0 || st.Events.Load() != int64(len(evs)) || st.Skipped.Load() != 0 || st.Pending.Load() != 0 {
		t.Fatalf("commits %d, events %d, skipped %d, pending %d", st.Commits.Load(), st.Events.Load(), st.Skipped.Load(), st.Pending.Load())
	}
	// Per resource, a file's events keep their order.
	byFile := map[string][]map[string]any{}
	for _, r := range rows(t, tb) {
		byFile[r["filename"].(string)] = append(byFile[r["filename"].(string)], r)
	}
	for f, rs := range byFile {
		last := map[string]float64{}
		for _, r := range rs {
			res, seq := r["resource_id"].(string), r["sequence"].(float64)
			if seq <= last[res] {
				t.Fatalf("%s: %s's sequence %v after %v", f, res, seq, last[res])
			}
			last[res] = seq
		}
	}
}

// batch is a Parquet batch of evs at offsets first… of partition 0.
func batch(t *testing.T, first int64, evs []*schemas.Event, columns ...connectors.Column) *connectors.Batch {
	t.Helper()
	b := connectortest.MakeBatch(t, 0, first, evs, "parquet", "zstd")
	if len(columns) > 0 {
		enc, comp, err := connectors.NewBody("parquet", "zstd", "deflate", columns...)
		if err != nil {
			t.Fatal(err)
		}
		if b.Body, err = connectors.EncodeBody(enc, comp, b); err != nil {
			t.Fatal(err)
		}
	}
	b.Key = "timestamp_day=2024-01-15/" + b.Key[strings.LastIndexByte(b.Key, '/')+1:]
	return b
}

func deliver(t *testing.T, s *iceberg.Sink, b *connectors.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.Flush()
	if err := s.Deliver(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// A batch delivered again, by a restarted worker or by two at once (a
// zombie and the partition's new owner), is in the table once.
func TestBatchDeliveredAgainIsAddedOnce(t *testing.T) {
	dir := t.TempDir()
	c := config(dir)
	evs := connectortest.Events(3, 300)
	b1, b2 := batch(t, 0, evs[:150]), batch(t, 150, evs[150:])

	first := open(t, c)
	deliver(t, first, b1)
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A restart: the next owner reads from the last Kafka commit, which
	// never heard of b1, and delivers it again.
	again := open(t, c)
	deliver(t, again, b1)
	if n := again.Stats().Skipped.Load(); n != 1 {
		t.Fatalf("the restarted sink skipped %d batches, want b1", n)
	}
	// Two owners deliver b2 at once.
	other := open(t, c)
	var wg sync.WaitGroup
	for _, s := range []*iceberg.Sink{again, other} {
		wg.Go(func() { deliver(t, s, b2) })
	}
	wg.Wait()
	if n := again.Stats().Skipped.Load() + other.Stats().Skipped.Load(); n != 2 {
		t.Fatalf("the two owners skipped %d batches together, want b1 and one copy of b2", n)
	}
	tb := readTable(t, c)
	icebergtable.CheckOnce(t, tb, evs)
	if got := tb.Summary["firehose.suite.offsets.events.0"]; got != "150-299" {
		t.Fatalf("the current snapshot's summary names %q for events/0, want 150-299", got)
	}
}

// A batch with a column the table lacks (a promoted column added to the
// connector) adds it as an optional column; older files read it as null.
func TestNewColumnEvolvesTheSchema(t *testing.T) {
	dir := t.TempDir()
	c := config(dir)
	evs := connectortest.Events(5, 200)
	s := open(t, c)
	deliver(t, s, batch(t, 0, evs[:100]))
	deliver(t, s, batch(t, 100, evs[100:], connectors.Column{Name: "price", Path: "metadata.buyer_response.price", Type: "double"}))
	tb := readTable(t, c)
	icebergtable.CheckOnce(t, tb, evs)
	if !slices.Contains(tb.Schema, "price") {
		t.Fatalf("columns %v lack price", tb.Schema)
	}
	if len(tb.Snapshots) != 2 {
		t.Fatalf("%d snapshots, want 2 (a schema change adds none)", len(tb.Snapshots))
	}
}

func TestPartitionByConfig(t *testing.T) {
	for _, tc := range []struct {
		spec []string
		err  string
	}{
		{[]string{"day(timestamp)", "event_type"}, ""},
		{[]string{"hour(timestamp)", "identity(account_id)"}, ""},
		{[]string{"day(flow_id)"}, "applies to timestamp"},
		{[]string{"bucket(resource_id)"}, "not supported yet"},
		{[]string{"sequence"}, "string field"},
		{[]string{"event_type", "identity(event_type)"}, "partitioned twice"},
		{[]string{"day(timestamp)", "hour(timestamp)"}, "one time transform"},
		{[]string{"day(timestamp"}, "want transform(column)"},
	} {
		_, err := iceberg.ParsePartitions(tc.spec)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: got %v, want %q", tc.spec, err, tc.err)
		}
	}
}

// An identity partition holds the whole value, however long (Iceberg's
// column bounds are cut to 16 characters; a partition value is not).
func TestLongIdentityPartitionValue(t *testing.T) {
	c := config(t.TempDir())
	c.PartitionBy = []string{"day(timestamp)", "event_type"}
	s := open(t, c)
	evs := connectortest.Events(3, 10)
	long := "lead.buyer_response.received." + strings.Repeat("x", 90) + "/../é"
	for _, e := range evs {
		e.EventType = long
	}
	deliver(t, s, batch(t, 0, evs))
	tb := readTable(t, c)
	icebergtable.CheckOnce(t, tb, evs)
	if len(tb.Files) != 1 || tb.Files[0].Partition["event_type"] != long {
		t.Fatalf("files %+v: want one, partition event_type %q", tb.Files, long)
	}
}

// A connector's transform shapes the table: its columns are the fields
// the steps make, and every event is in it once.
func TestTransformShapesTheTable(t *testing.T) {
	dir := t.TempDir()
	c := config(dir)
	evs := connectortest.EventsOver(9, 20, 600)
	spread(evs)
	sink := open(t, c)
	p := connectortest.StartPipeline(t, sink, evs, connectors.Config{
		Type: "iceberg", Encoding: "parquet", Compression: "zstd",
		Batch: connectors.Bounds{MaxEvents: 100, MaxAge: 200 * time.Millisecond},
		Transform: []transform.Step{
			{Select: []string{"event_id", "timestamp", "account_id", "resource_id", "sequence", "event_type"}},
			{Set: transform.Pairs{{Key: "next", Value: "sequence + 1"}}},
		},
	})
	p.Drained(t)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	tb := readTable(t, c)
	icebergtable.CheckOnce(t, tb, evs)
	want := []string{"event_id", "timestamp", "account_id", "resource_id", "sequence", "event_type", "next", "firehose_metadata"}
	if !slices.Equal(tb.Schema, want) {
		t.Fatalf("columns %v, want %v", tb.Schema, want)
	}
}
