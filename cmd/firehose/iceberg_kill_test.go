package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/icebergtable"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// SIGKILLs of two workers of one Iceberg connector, committing to one
// table in S3 (versitygw, through a proxy that holds each upload for up to
// 200 ms, so that commits take a while and kills land between a data
// file's upload and its commit, and during commits): after the last
// restart the current snapshot holds every event exactly once, and the
// snapshots' summaries name every offset exactly once.
func TestKilledWorkersCommitEachEventOnceToTheTable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills worker processes")
	}
	b := testenv.Start(t).Broker
	srv, slow := slowS3(t, 200*time.Millisecond)
	catalog := filepath.Join(t.TempDir(), "catalog.db")
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: lake
    type: iceberg
    max_in_flight: 8
    batch: {max_events: 300, max_age: 60ms}
    iceberg:
      catalog: {type: sql, uri: "sqlite://%s"}
      warehouse: s3://lake/warehouse
      commit_interval: 1s
      s3: {endpoint: %q, path_style: true, region: us-east-1, access_key_id: %s, secret_access_key: %s}
`, b.Addr, catalog, slow.URL, srv.Access, srv.Secret))
	if o, err := run(t, "topology", "apply", "-c", cfg); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	var ws []*worker
	for _, name := range []string{"i1", "i2"} {
		w := &worker{t: t, name: name, args: []string{"run", "-c", cfg, "--role", "connector", "--instance-id", name, "--shutdown-timeout", "5s", "--log-level", "warn"}}
		w.start()
		t.Cleanup(func() { <-w.signal(syscall.SIGKILL); w.dumpLogs() })
		ws = append(ws, w)
	}
	bucket := filepath.Join(srv.Dir, "lake")
	read := func() icebergtable.Table {
		return icebergtable.Read(t, catalog, "firehose", "events", "s3://lake/="+bucket+"/")
	}

	evs := generator.Unique(46, 300, 9000)
	produced := produceSpread(t, b.Addr, "events", evs, 150, 40*time.Millisecond)
	wait.Eventually(t, 20*time.Second, "a first commit", func() bool { tb := read(); return tb.Error == "" && tb.Records > 0 })
	for round := range 8 {
		time.Sleep(time.Duration(150+rand.IntN(900)) * time.Millisecond)
		w := ws[round%2]
		<-w.signal(syscall.SIGKILL)
		w.start()
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 120*time.Second, "every event in the table", func() bool { return read().Records >= len(evs) })
	for _, w := range ws {
		<-w.signal(syscall.SIGTERM)
	}
	tb := read()
	icebergtable.CheckOnce(t, tb, evs)
	offsets := map[[2]int64]bool{}
	for _, r := range connectortest.ReadTopic(t, b.Addr, "events", len(evs)) {
		offsets[[2]int64{int64(r.Partition), r.Offset}] = true
	}
	icebergtable.CheckRanges(t, tb, "lake", "events", offsets)

	// The kills came between uploads and commits: data files that no
	// snapshot holds were left behind (the README's orphans).
	live := map[string]bool{}
	for _, f := range tb.Files {
		live[f.Path] = true
	}
	orphans := 0
	_ = filepath.WalkDir(filepath.Join(bucket, "warehouse"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") && !live[p] {
			orphans++
		}
		return nil
	})
	t.Logf("%d data files in %d snapshots; %d orphaned data files", len(tb.Files), len(tb.Snapshots), orphans)
	if orphans == 0 {
		t.Fatal("no kill came between a data file's upload and its commit: the test proves nothing")
	}

	// status reads the table from the catalog.
	o, err := run(t, "status", "-c", cfg, "--interval", "10ms")
	if err != nil || !strings.Contains(o, "iceberg table firehose.events  snapshot ") || !strings.Contains(o, fmt.Sprintf("%d records in %d files", len(evs), len(tb.Files))) ||
		!strings.Contains(o, "table holds offsets up to  0:") {
		t.Fatalf("status: %v\n%s", err, o)
	}
	// The orphans command finds the orphaned data files, deletes them,
	// and the table reads the same.
	o, err = run(t, "iceberg", "orphans", "-c", cfg, "--connector", "lake", "--older-than", "0s")
	if err != nil || strings.Count(o, ".parquet\t") != orphans {
		t.Fatalf("iceberg orphans listed %d data files, want %d: %v\n%s", strings.Count(o, ".parquet\t"), orphans, err, o)
	}
	if o, err := run(t, "iceberg", "orphans", "-c", cfg, "--connector", "lake", "--older-than", "0s", "--delete"); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	if o, err := run(t, "iceberg", "orphans", "-c", cfg, "--connector", "lake", "--older-than", "0s"); err != nil || strings.Contains(o, ".parquet") {
		t.Fatalf("orphans left after --delete: %v\n%s", err, o)
	}
	icebergtable.CheckOnce(t, read(), evs)
}
