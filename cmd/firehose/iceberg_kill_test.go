package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/icebergtable"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// SIGKILLs of two workers of one Iceberg connector, committing to one
// table in S3 (versitygw), between data files' uploads and their commits,
// during commits, and just after commits: after the last restart the
// current snapshot holds every event exactly once, and the snapshots'
// summaries name every offset exactly once.
func TestKilledWorkersCommitEachEventOnceToTheTable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills worker processes")
	}
	b := testenv.Start(t).Broker
	// Offset commits take 400 ms to answer: a kill then often lands after
	// a table commit and before Kafka has the offsets, the case in which a
	// restarted worker delivers batches the table holds already.
	b.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		b.SleepControl(func() { time.Sleep(400 * time.Millisecond) })
		return nil, nil, false
	})
	// S3 behind a proxy that holds each data file's upload for up to
	// 200 ms, so that kills land between uploads and commits, and each
	// write of a commit's metadata (manifests, manifest list, metadata
	// JSON) for 100 ms, telling committing when one begins and committed
	// when the metadata JSON is written, so that kills can land inside a
	// commit and just after it.
	committing, committed := make(chan struct{}, 1), make(chan struct{}, 1)
	signal := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	srv, slow := proxiedS3(t, func(r *http.Request) {
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/metadata/"):
			signal(committing)
			time.Sleep(100 * time.Millisecond)
		case r.Method == http.MethodPut:
			time.Sleep(rand.N(200 * time.Millisecond))
		}
	}, func(r *http.Request) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".metadata.json") {
			signal(committed) // the commit's last write: the catalog's row is next
		}
	})
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
	produced := produceSpread(t, b.Addr, "events", evs, 50, 60*time.Millisecond)
	wait.Eventually(t, 20*time.Second, "a first commit", func() bool { tb := read(); return tb.Error == "" && tb.Records > 0 })
	// Kill one worker or the other every 0.15 to 1 s while events come;
	// in other rounds, kill both while a commit writes its metadata, or
	// just after a commit, while Kafka is taking its offsets.
	killAllOn := func(c chan struct{}, after time.Duration) int {
		select {
		case <-c: // a stale signal: wait for a fresh one
		default:
		}
		select {
		case <-c:
			time.Sleep(after)
			for _, w := range ws {
				<-w.signal(syscall.SIGKILL)
			}
			for _, w := range ws {
				w.start()
			}
			return 1
		case <-time.After(15 * time.Second):
			return 0 // no commit came: every event may be in already
		}
	}
	kills, inCommit, afterCommit := 0, 0, 0
	for done := false; !done || kills < 9; kills++ {
		switch kills % 3 {
		case 1:
			inCommit += killAllOn(committing, 0)
		case 2:
			afterCommit += killAllOn(committed, 100*time.Millisecond)
		default:
			time.Sleep(time.Duration(150+rand.IntN(850)) * time.Millisecond)
			w := ws[kills%2]
			<-w.signal(syscall.SIGKILL)
			w.start()
		}
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
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
	t.Logf("%d data files in %d snapshots; %d orphaned data files; %d kills, %d of them during commits and %d after", len(tb.Files), len(tb.Snapshots), orphans, kills, inCommit, afterCommit)
	if orphans == 0 || inCommit == 0 || afterCommit == 0 {
		t.Fatalf("%d orphaned data files, %d kills during commits, %d after: the kills missed a window, the test proves too little", orphans, inCommit, afterCommit)
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
	// Kills during commits leave their manifests, manifest lists or
	// metadata JSON behind.
	t.Logf("%d orphaned metadata files", strings.Count(o, "/metadata/"))
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
