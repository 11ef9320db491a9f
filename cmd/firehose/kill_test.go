package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/versitygw"
	"github.com/firehose/firehose/testsupport/wait"
)

// produceSpread produces evs to topic, keyed by resource, chunk events
// at a time with a pause between chunks, in the background; the channel
// says when all were written, or the first error.
func produceSpread(t *testing.T, broker, topic string, evs []*schemas.Event, chunk int, pause time.Duration) <-chan error {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(evs); i += chunk {
			var recs []*kgo.Record
			for _, e := range evs[i:min(i+chunk, len(evs))] {
				v, _ := schemas.JSON{}.Append(nil, e)
				recs = append(recs, &kgo.Record{Key: []byte(e.ResourceID), Value: v})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(pause)
		}
		produced <- nil
	}()
	return produced
}

// slowS3 starts versitygw with a bucket "lake", and a proxy to it that
// holds each upload for up to most: uploads of a partition finish out of
// order.
func slowS3(t *testing.T, most time.Duration) (*versitygw.Server, *httptest.Server) {
	return proxiedS3(t, func(r *http.Request) {
		if r.Method == http.MethodPut {
			time.Sleep(rand.N(most))
		}
	}, nil)
}

// proxiedS3 starts versitygw with a bucket "lake", and a proxy to it that
// calls before with each request before it forwards it and after, if not
// nil, once it has answered.
func proxiedS3(t *testing.T, before, after func(r *http.Request)) (*versitygw.Server, *httptest.Server) {
	t.Helper()
	srv := versitygw.Start(t)
	srv.Bucket(t, "lake")
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before(r)
		proxy.ServeHTTP(w, r)
		if after != nil {
			after(r)
		}
	}))
	t.Cleanup(slow.Close)
	return srv, slow
}

// eventCounts counts each event's occurrences in the .ndjson objects
// under dir (a file connector's directory, or versitygw's bucket).
func eventCounts(t *testing.T, dir string) map[string]int {
	return eventCountsWhere(t, dir, func(string) bool { return true })
}

// eventCountsWhere counts as eventCounts does, in the objects whose paths
// keep says to read.
func eventCountsWhere(t *testing.T, dir string, keep func(path string) bool) map[string]int {
	t.Helper()
	seen := map[string]int{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ndjson") || strings.Contains(p, "/.") || !keep(p) {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if e, err := (schemas.JSON{}).Decode(sc.Bytes()); err == nil {
				seen[e.EventID]++
			}
		}
		return nil
	})
	return seen
}

// SIGKILLs of a connector worker while its file and S3 (versitygw)
// connectors upload batches closed by max_age, eight in flight: after the
// last restart every event is in exactly one object of each store.
func TestKilledWorkerWritesEachEventToOneObject(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills worker processes")
	}
	b := testenv.Start(t).Broker
	// Uploads take 0 to 250 ms through this proxy, so batches of a
	// partition finish out of order and a kill finds later ones stored
	// while earlier ones are not: the case that put events in two objects.
	srv, slow := slowS3(t, 250*time.Millisecond)
	out := t.TempDir()
	connector := func(name, typ, settings string) string {
		return fmt.Sprintf(`  - name: %s
    type: %s
    encoding: ndjson
    compression: none
    max_in_flight: 8
    batch: {max_events: 400, max_age: 60ms}
    %s: %s
`, name, typ, typ, settings)
	}
	cfg := writeConfig(t, fmt.Sprintf("kafka:\n  brokers: [%q]\nprocessor: {enabled: false}\napi: {listen: \"off\"}\nconnectors:\n%s%s",
		b.Addr,
		connector("files", "file", fmt.Sprintf("{dir: %q}", out)),
		connector("lake", "s3", fmt.Sprintf("{bucket: lake, endpoint: %q, path_style: true, region: us-east-1, access_key_id: %s, secret_access_key: %s}", slow.URL, srv.Access, srv.Secret))))
	if o, err := run(t, "topology", "apply", "-c", cfg); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	w := &worker{t: t, name: "c1", args: []string{"run", "-c", cfg, "--role", "connector", "--instance-id", "c1", "--shutdown-timeout", "5s", "--log-level", "warn"}}
	w.start()
	t.Cleanup(func() { <-w.signal(syscall.SIGKILL) })

	evs := generator.Unique(43, 400, 12000)
	produced := produceSpread(t, b.Addr, "events", evs, 250, 40*time.Millisecond) // batches close by age, mid-stream
	bucket := filepath.Join(srv.Dir, "lake")
	wait.Eventually(t, 60*time.Second, "first objects", func() bool { return len(eventCounts(t, out)) > 0 && len(eventCounts(t, bucket)) > 0 })
	for round := range 6 {
		time.Sleep(time.Duration(200+round*90) * time.Millisecond) // uploads under way
		<-w.signal(syscall.SIGKILL)
		w.start()
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{out, bucket} {
		wait.Eventually(t, 120*time.Second, "every event in "+dir, func() bool { return len(eventCounts(t, dir)) == len(evs) })
	}
	<-w.signal(syscall.SIGTERM)
	for store, dir := range map[string]string{"file": out, "s3": bucket} {
		twice := 0
		for _, n := range eventCounts(t, dir) {
			if n > 1 {
				twice++
			}
		}
		if twice > 0 {
			t.Errorf("%s: %d of %d events are in more than one object", store, twice, len(evs))
		}
	}
}

// SIGKILLs of the worker process running a replay job beside live
// delivery, while the job's uploads (to S3 on versitygw, through a slow
// proxy) are under way: a restarted worker takes the job up from its
// commits and completes it, with every event of the range in exactly one
// of the job's objects, and every event in exactly one live object.
func TestKilledWorkerCompletesReplayJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills worker processes")
	}
	b := testenv.Start(t).Broker
	srv, slow := slowS3(t, 300*time.Millisecond)
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: lake
    type: s3
    encoding: ndjson
    compression: none
    max_in_flight: 8
    batch: {max_events: 200, max_age: 60ms}
    s3: {bucket: lake, endpoint: %q, path_style: true, region: us-east-1, access_key_id: %s, secret_access_key: %s}
`, b.Addr, slow.URL, srv.Access, srv.Secret))
	if o, err := run(t, "topology", "apply", "-c", cfg); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	w := &worker{t: t, name: "r1", args: []string{"run", "-c", cfg, "--role", "connector", "--instance-id", "r1", "--shutdown-timeout", "5s", "--log-level", "warn"}}
	w.start()
	t.Cleanup(func() { <-w.signal(syscall.SIGKILL) })
	bucket := filepath.Join(srv.Dir, "lake")
	live := func(p string) bool { return !strings.Contains(p, ".replay-") }

	evs := generator.Unique(44, 300, 6000)
	if err := <-produceSpread(t, b.Addr, "events", evs, 1000, 0); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 60*time.Second, "every event delivered live", func() bool { return len(eventCountsWhere(t, bucket, live)) == len(evs) })

	o, err := run(t, "replay", "-c", cfg, "--connector", "lake", "--earliest", "--detach")
	if err != nil || !strings.Contains(o, "submitted") {
		t.Fatalf("replay: %v\n%s", err, o)
	}
	id := o[strings.Index(o, "replay job ")+len("replay job ") : strings.Index(o, " submitted")]
	ofJob := func(p string) bool { return strings.Contains(p, ".replay-"+id+".") }
	later := generator.Unique(45, 300, 2000)
	for _, e := range later {
		e.EventID = "later_" + e.EventID // ids of their own: the generator's name resource and sequence
	}
	more := produceSpread(t, b.Addr, "events", later, 100, 50*time.Millisecond) // live traffic during the job
	midJob := 0
	for range 3 {
		before := len(eventCountsWhere(t, bucket, ofJob))
		wait.Eventually(t, 60*time.Second, "the job delivering", func() bool { return len(eventCountsWhere(t, bucket, ofJob)) > before })
		l, _ := run(t, "replay", "list", "-c", cfg)
		<-w.signal(syscall.SIGKILL)
		if jobState(l, id) == "running" {
			midJob++
		}
		w.start()
	}
	if midJob == 0 {
		t.Fatal("no kill came while the job was running: the test proves nothing")
	}
	if err := <-more; err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 120*time.Second, "the job complete", func() bool {
		l, _ := run(t, "replay", "list", "-c", cfg)
		return jobState(l, id) == "complete"
	})
	<-w.signal(syscall.SIGTERM)
	job := eventCountsWhere(t, bucket, ofJob)
	for _, e := range evs {
		if job[e.EventID] != 1 {
			t.Fatalf("event %s is in %d of the job's objects", e.EventID, job[e.EventID])
		}
	}
	twice := 0
	for _, n := range eventCountsWhere(t, bucket, live) {
		if n > 1 {
			twice++
		}
	}
	if twice > 0 || len(eventCountsWhere(t, bucket, live)) != len(evs)+2000 {
		t.Fatalf("live objects: %d events, %d of them twice; want %d once each", len(eventCountsWhere(t, bucket, live)), twice, len(evs)+2000)
	}
}

// jobState is the state firehose replay list gives job id.
func jobState(list, id string) string {
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == id {
			return f[1]
		}
	}
	return ""
}
