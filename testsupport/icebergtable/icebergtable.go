// Package icebergtable reads an Iceberg table as an engine does, with none
// of Firehose's or iceberg-go's code: the SQL catalog's row with Python's
// sqlite3, the metadata JSON, the manifest list and manifests with
// Debian's python3-avro (make test installs it), and the data files with
// DuckDB.
package icebergtable

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/duckdb"
)

// Table is what an engine sees of a table.
type Table struct {
	Error            string              `json:"error"`
	MetadataLocation string              `json:"metadata_location"`
	FormatVersion    int                 `json:"format_version"`
	Schema           []string            `json:"schema"`
	PartitionSpec    []map[string]any    `json:"partition_spec"`
	Summary          map[string]string   `json:"summary"` // the current snapshot's
	Snapshots        []map[string]string `json:"snapshots"`
	// Files are the current snapshot's live data files.
	Files []struct {
		Path      string         `json:"path"`
		Records   int            `json:"records"`
		Partition map[string]any `json:"partition"`
	} `json:"files"`
	Records int `json:"records"`
}

// Read reads table namespace.name of the SQLite catalog db. bucket, if not
// empty, is "s3://bucket/=dir": that bucket's objects are read from dir.
// A table not in the catalog has Error set.
func Read(t testing.TB, db, namespace, name, bucket string) Table {
	t.Helper()
	python := "/usr/bin/python3" // Debian's, beside its python3-avro
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	if err := exec.Command(python, "-c", "import avro.datafile").Run(); err != nil {
		t.Fatal("python3-avro is not installed; make test installs it (apt-get install python3-avro)")
	}
	_, here, _, _ := runtime.Caller(0)
	args := []string{filepath.Join(filepath.Dir(here), "read_table.py"), db, namespace, name}
	if bucket != "" {
		args = append(args, bucket)
	}
	cmd := exec.Command(python, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("read_table.py: %v\n%s", err, stderr.String())
	}
	var tb Table
	if err := json.Unmarshal(out.Bytes(), &tb); err != nil {
		t.Fatalf("read_table.py: %v\n%s", err, out.String())
	}
	return tb
}

// Rows reads the table's live data files with DuckDB: each event's id,
// resource, sequence, UTC day, file and batch id.
func Rows(t testing.TB, tb Table) []map[string]any {
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

// CheckOnce asserts the table holds every event of want exactly once and
// nothing else, each in a data file of its own day's partition
// (timestamp_day).
func CheckOnce(t testing.TB, tb Table, want []*schemas.Event) {
	t.Helper()
	got := Rows(t, tb)
	if tb.Records != len(want) || len(got) != len(want) {
		t.Fatalf("the current snapshot holds %d events in its manifests, DuckDB reads %d from %d files; want %d", tb.Records, len(got), len(tb.Files), len(want))
	}
	days := map[string]float64{} // file → partition value, days since 1970
	for _, f := range tb.Files {
		days[f.Path], _ = f.Partition["timestamp_day"].(float64)
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

// CheckRanges asserts the snapshots' summaries name, for connector and
// topic, every offset of offsets ({partition, offset}) exactly once, and
// no other.
func CheckRanges(t testing.TB, tb Table, connector, topic string, offsets map[[2]int64]bool) {
	t.Helper()
	covered := map[[2]int64]int{}
	for _, s := range tb.Snapshots {
		for k, v := range s {
			conn, tp, part, ranges, ok := iceberg.ParseOffsets(k, v)
			if !ok || conn != connector || tp != topic {
				continue
			}
			for _, r := range ranges {
				for o := r[0]; o <= r[1]; o++ {
					covered[[2]int64{int64(part), o}]++
				}
			}
		}
	}
	for o := range offsets {
		if n := covered[o]; n != 1 {
			t.Fatalf("offset %d of partition %d is in %d snapshots' ranges, want 1", o[1], o[0], n)
		}
	}
	for o := range covered {
		if !offsets[o] {
			t.Fatalf("the summaries name offset %d of partition %d, which holds no event", o[1], o[0])
		}
	}
}
