package iceberg_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
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
	"github.com/firehose/firehose/testsupport/duckdb"
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

// Table is what an engine sees of the table (testdata/read_table.py).
type Table struct {
	Error            string              `json:"error"`
	MetadataLocation string              `json:"metadata_location"`
	FormatVersion    int                 `json:"format_version"`
	Schema           []string            `json:"schema"`
	PartitionSpec    []map[string]any    `json:"partition_spec"`
	Summary          map[string]string   `json:"summary"`
	Snapshots        []map[string]string `json:"snapshots"`
	Files            []struct {
		Path      string         `json:"path"`
		Records   int            `json:"records"`
		Partition map[string]any `json:"partition"`
	} `json:"files"`
	Records int `json:"records"`
}

// readTable reads the table with Python's sqlite3 and Debian's
// python3-avro, none of Firehose's or iceberg-go's code.
func readTable(t testing.TB, c iceberg.Config) Table {
	t.Helper()
	python := "/usr/bin/python3" // Debian's, beside its python3-avro
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	if err := exec.Command(python, "-c", "import avro.datafile").Run(); err != nil {
		t.Fatal("python3-avro is not installed; make test installs it (apt-get install python3-avro)")
	}
	db := strings.TrimPrefix(c.Catalog.URI, "sqlite://")
	cmd := exec.Command(python, "testdata/read_table.py", db, c.Namespace, c.Table)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("read_table.py: %v\n%s", err, stderr.String())
	}
	var tb Table
	if err := json.Unmarshal(out.Bytes(), &tb); err != nil {
		t.Fatalf("read_table.py: %v\n%s", err, out.String())
	}
	if tb.Error != "" {
		t.Fatalf("read_table.py: %s", tb.Error)
	}
	return tb
}

// rows reads the table's live data files with DuckDB: each event's id,
// day and resource order.
func rows(t testing.TB, tb Table) []map[string]any {
	t.Helper()
	if len(tb.Files) == 0 {
		return nil
	}
	var paths []string
	for _, f := range tb.Files {
		paths = append(paths, "'"+f.Path+"'")
	}
	return duckdb.Query(t, `select event_id, resource_id, sequence::DOUBLE as sequence, strftime("timestamp" at time zone 'UTC', '%Y-%m-%d') as day,
		filename, firehose_metadata.batch_id as batch from read_parquet([`+strings.Join(paths, ",")+`], filename = true)`)
}

// spread gives the events timestamps over three days, in order.
func spread(evs []*schemas.Event) {
	start := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)
	for i, e := range evs {
		e.Timestamp = start.Add(time.Duration(i) * 72 * time.Hour / time.Duration(len(evs)))
	}
}

// checkOnce asserts the table holds every event of want exactly once,
// each in a file of its own day's partition.
func checkOnce(t *testing.T, tb Table, want []*schemas.Event) {
	t.Helper()
	got := rows(t, tb)
	if tb.Records != len(want) || len(got) != len(want) {
		t.Fatalf("the current snapshot holds %d events in its manifests, DuckDB reads %d from %d files; want %d", tb.Records, len(got), len(tb.Files), len(want))
	}
	days := map[string]float64{} // file → partition value, days since 1970
	for _, f := range tb.Files {
		days[f.Path] = f.Partition["timestamp_day"].(float64)
	}
	seen := map[string]bool{}
	for _, r := range got {
		id := r["event_id"].(string)
		if seen[id] {
			t.Fatalf("%s is in the table twice", id)
		}
		seen[id] = true
		day, _ := time.Parse("2006-01-02", r["day"].(string))
		if want := float64(day.Unix() / 86400); days[r["filename"].(string)] != want {
			t.Fatalf("%s of %s is in a file of partition %v", id, r["day"], days[r["filename"].(string)])
		}
	}
	for _, e := range want {
		if !seen[e.EventID] {
			t.Fatalf("%s is not in the table", e.EventID)
		}
	}
}

// checkRanges asserts the snapshots' summaries name every offset of p
// exactly once, each range in one snapshot.
func checkRanges(t *testing.T, tb Table, p *connectortest.Pipeline) {
	t.Helper()
	covered := map[[2]int64]int{} // partition, offset → times
	for _, s := range tb.Snapshots {
		for k, v := range s {
			conn, topic, part, ranges, ok := iceberg.ParseOffsets(k, v)
			if !ok {
				continue
			}
			if conn != "suite" || topic != "events" {
				t.Fatalf("summary key %s names another connector or topic", k)
			}
			for _, r := range ranges {
				for o := r[0]; o <= r[1]; o++ {
					covered[[2]int64{int64(part), o}]++
				}
			}
		}
	}
	for _, pos := range p.Offsets {
		if n := covered[[2]int64{int64(pos.Partition), pos.Offset}]; n != 1 {
			t.Fatalf("offset %d of partition %d is in %d snapshots' ranges, want 1", pos.Offset, pos.Partition, n)
		}
	}
	if len(covered) != len(p.Offsets) {
		t.Fatalf("the summaries name %d offsets, the topic holds %d", len(covered), len(p.Offsets))
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
	checkOnce(t, tb, evs)
	checkRanges(t, tb, p)
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
	checkOnce(t, tb, evs)
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
	checkOnce(t, tb, evs)
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
