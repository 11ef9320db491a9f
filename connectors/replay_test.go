package connectors_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// stored is what the NDJSON objects under a directory hold: per event id,
// how many live objects and how many objects of each replay job hold it,
// and the replay job each replayed event's firehose_metadata names.
type stored struct {
	live   map[string]int
	replay map[string]map[string]int // job (from the object name) -> event id -> count
	marked map[string]string         // event id -> firehose_metadata.replay, in replay objects
}

func readStored(t *testing.T, dir string) stored {
	t.Helper()
	s := stored{live: map[string]int{}, replay: map[string]map[string]int{}, marked: map[string]string{}}
	eachStored(t, dir, func(p string, _ int, e *schemas.Event) error {
		job := ""
		if _, rest, ok := strings.Cut(filepath.Base(p), ".replay-"); ok {
			job, _, _ = strings.Cut(rest, ".")
		}
		meta := string(e.Extra.Get(connectors.MetadataKey))
		if job == "" {
			if strings.Contains(meta, `"replay"`) {
				return fmt.Errorf("%s: a live object's event is marked replayed: %s", p, meta)
			}
			s.live[e.EventID]++
			return nil
		}
		if s.replay[job] == nil {
			s.replay[job] = map[string]int{}
		}
		s.replay[job][e.EventID]++
		_, after, _ := strings.Cut(meta, `"replay":"`)
		s.marked[e.EventID], _, _ = strings.Cut(after, `"`)
		return nil
	})
	return s
}

// A replay job runs beside live delivery: a past range of the events
// topic, written in transactions (so the range ends at a commit marker),
// is delivered once more into objects named and marked for the job, while
// events produced during the job are delivered live exactly once and
// never into the job's objects. A worker of the job killed halfway is
// replaced and the job completes with every event of its range in
// exactly one of its objects.
func TestReplayJobBesideLiveDelivery(t *testing.T) {
	defer func(d time.Duration) { connectors.ReplayPoll = d }(connectors.ReplayPoll)
	connectors.ReplayPoll = 50 * time.Millisecond
	br := testenv.Start(t).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.DefaultProduceTopic("events"), kgo.TransactionalID("replay-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.CreateTopics(t, cl, map[string]int32{"events": 3, "events.dlq": 1})
	evs := connectortest.Events(31, 1500)
	produce := func(evs []*schemas.Event) {
		t.Helper()
		ctx := context.Background()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			v, _ := schemas.JSON{}.Append(nil, e)
			cl.Produce(ctx, &kgo.Record{Key: []byte(e.ResourceID), Value: v}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	produce(evs[:500])
	produce(evs[500:1000])

	dir := t.TempDir()
	fc := file.Config{Dir: dir}
	fc.Defaults()
	sink, err := file.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	o := connectors.Options{
		Connector: connectors.Config{Name: "lake", Topic: "events", Group: "lake", MaxInFlight: 8,
			Batch: connectors.Bounds{MaxEvents: 60, MaxAge: 50 * time.Millisecond}},
		DLQTopic: "events.dlq", EventsEncoding: "json", Sink: sink,
		Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)}, ShutdownTimeout: 10 * time.Second,
	}
	live, err := connectors.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.Run(ctx) }()
	wait.Eventually(t, 30*time.Second, "the first 1,000 events delivered live", func() bool { return len(readStored(t, dir).live) == 1000 })

	// The range: every partition from its start to its end now (after
	// the second transaction's marker).
	from, until := topicRange(t, adm, "events")
	id, err := connectors.SubmitReplay(context.Background(), adm, "lake", "events", from, until)
	if err != nil {
		t.Fatal(err)
	}

	// A first replay worker, killed once it delivered three batches and
	// holds the rest.
	crashed := o
	crashed.ShutdownTimeout = -1
	crashed.Sink = &stallAfter{Sink: sink, n: 3}
	r1, err := connectors.NewReplayer(crashed)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, kill := context.WithCancel(ctx)
	r1Done := make(chan error, 1)
	go func() { r1Done <- r1.Run(ctx1) }()
	produce(evs[1000:1250]) // live traffic during the job
	wait.Eventually(t, 30*time.Second, "the job's first objects", func() bool { return len(readStored(t, dir).replay[id]) > 0 })
	kill()
	<-r1Done
	if jobs, err := connectors.ListReplays(context.Background(), adm, "lake"); err != nil || len(jobs) != 1 || jobs[0].Complete() || jobs[0].Done() == 0 {
		t.Fatalf("after the kill: %+v, %v; want one job part done", jobs, err)
	}

	r2, err := connectors.NewReplayer(o)
	if err != nil {
		t.Fatal(err)
	}
	r2Done := make(chan error, 1)
	go func() { r2Done <- r2.Run(ctx) }()
	produce(evs[1250:])
	var job connectors.ReplayJob
	wait.Eventually(t, 60*time.Second, "the job complete", func() bool {
		jobs, err := connectors.ListReplays(context.Background(), adm, "lake")
		if err != nil || len(jobs) != 1 {
			return false
		}
		job = jobs[0]
		return job.Complete()
	})
	if job.ID != id || job.Total() != job.Done() || job.State() != "complete" {
		t.Fatalf("job %+v", job)
	}
	wait.Eventually(t, 30*time.Second, "every event delivered live", func() bool { return len(readStored(t, dir).live) == len(evs) })
	cancel()
	if err := <-liveDone; err != nil {
		t.Fatal(err)
	}
	if err := <-r2Done; err != nil {
		t.Fatal(err)
	}

	s := readStored(t, dir)
	for _, e := range evs {
		if s.live[e.EventID] != 1 {
			t.Fatalf("event %s in %d live objects", e.EventID, s.live[e.EventID])
		}
	}
	if len(s.replay) != 1 || len(s.replay[id]) != 1000 {
		t.Fatalf("replay objects: %d jobs, %d events of job %s; want the 1,000 events of the range", len(s.replay), len(s.replay[id]), id)
	}
	for _, e := range evs[:1000] {
		if n := s.replay[id][e.EventID]; n != 1 || s.marked[e.EventID] != id {
			t.Fatalf("event %s in %d of the job's objects, marked %q", e.EventID, n, s.marked[e.EventID])
		}
	}
}

// stallAfter delivers n batches, then holds every other until its
// context ends: a worker killed with deliveries in flight.
type stallAfter struct {
	*file.Sink
	mu sync.Mutex
	n  int
}

func (s *stallAfter) Deliver(ctx context.Context, b *connectors.Batch) error {
	s.mu.Lock()
	ok := s.n > 0
	s.n--
	s.mu.Unlock()
	if !ok {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Sink.Deliver(ctx, b)
}

// A cancelled job is listed as such, and a worker never runs it; a job's
// plan must end after it starts.
func TestReplayJobCancelled(t *testing.T) {
	evs := connectortest.Events(32, 100)
	_, adm, _ := eventsBroker(t, 2, evs)
	if _, err := connectors.SubmitReplay(context.Background(), adm, "lake", "events", map[int32]int64{0: 5}, map[int32]int64{0: 4}); err == nil {
		t.Fatal("a range ending before its start was submitted")
	}
	id, err := connectors.SubmitReplay(context.Background(), adm, "lake", "events", map[int32]int64{0: 0, 1: 10}, map[int32]int64{0: 20, 1: 30})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := connectors.ListReplays(context.Background(), adm, "lake")
	if err != nil || len(jobs) != 1 || jobs[0].ID != id || jobs[0].State() != "running" || jobs[0].Total() != 40 || jobs[0].Done() != 0 {
		t.Fatalf("submitted: %+v, %v", jobs, err)
	}
	if err := connectors.CancelReplay(context.Background(), adm, "lake", id); err != nil {
		t.Fatal(err)
	}
	if err := connectors.CancelReplay(context.Background(), adm, "lake", "00000000"); err == nil {
		t.Fatal("cancelled a job that does not exist")
	}
	jobs, err = connectors.ListReplays(context.Background(), adm, "lake")
	if err != nil || len(jobs) != 1 || jobs[0].State() != "cancelled" {
		t.Fatalf("after cancel: %+v, %v", jobs, err)
	}
}

// refusing refuses every batch as the destination would a bad payload.
type refusing struct{ *file.Sink }

func (refusing) Deliver(context.Context, *connectors.Batch) error {
	return connectors.Permanent(errors.New("payload refused"), "")
}

// A job whose worker stops on an error (here on_permanent_error: stop) is
// marked failed with the reason, and no worker takes it up again.
func TestReplayJobFails(t *testing.T) {
	defer func(d time.Duration) { connectors.ReplayPoll = d }(connectors.ReplayPoll)
	connectors.ReplayPoll = 50 * time.Millisecond
	evs := connectortest.Events(33, 50)
	br, adm, _ := eventsBroker(t, 1, evs)
	fc := file.Config{Dir: t.TempDir()}
	fc.Defaults()
	sink, err := file.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	o := connectors.Options{
		Connector: connectors.Config{Name: "lake", Topic: "events", Group: "lake", OnPermanentError: "stop",
			Batch: connectors.Bounds{MaxEvents: 10, MaxAge: 50 * time.Millisecond}},
		DLQTopic: "events.dlq", EventsEncoding: "json", Sink: refusing{sink}, Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)},
	}
	id, err := connectors.SubmitReplay(context.Background(), adm, "lake", "events", map[int32]int64{0: 0}, map[int32]int64{0: 50})
	if err != nil {
		t.Fatal(err)
	}
	r, err := connectors.NewReplayer(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var job connectors.ReplayJob
	wait.Eventually(t, 30*time.Second, "the job failed", func() bool {
		jobs, err := connectors.ListReplays(ctx, adm, "lake")
		if err != nil || len(jobs) != 1 {
			return false
		}
		job = jobs[0]
		return job.State() == "failed"
	})
	cancel()
	<-done
	if job.ID != id || !strings.Contains(job.Failed, "stopped") || job.Complete() {
		t.Fatalf("failed job: %+v", job)
	}
}
