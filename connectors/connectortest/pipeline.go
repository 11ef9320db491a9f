package connectortest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// Pipeline is a connector's worker running against an embedded broker
// whose topic "events" holds the events given, keyed by resource.
type Pipeline struct {
	Worker *connectors.Worker
	// Offsets are each event's partition and offset, in the order given.
	Offsets []Position
	adm     *kadm.Client
	addr    string // the broker's
	group   string
	done    chan error
	stop    func() error
}

// Position is a record's place in the events topic.
type Position struct {
	Partition int32
	Offset    int64
}

// StartPipeline produces evs to a new broker's "events" topic (3
// partitions; "events.dlq" exists too) and starts a worker delivering
// them to sink, with c's settings; Name, Topic and Group are set here,
// batch bounds left at zero are 100 events, 1 MiB and 100 ms, and a zero
// retry policy retries quickly.
func StartPipeline(t *testing.T, sink connectors.Destination, evs []*schemas.Event, c connectors.Config) *Pipeline {
	t.Helper()
	env := testenv.Start(t)
	cl := env.Client(kgo.DefaultProduceTopic("events"))
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	for topic, n := range map[string]int32{"events": 3, "events.dlq": 1} {
		if _, err := adm.CreateTopic(ctx, n, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		v, err := schemas.JSON{}.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Key: []byte(e.ResourceID), Value: v}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{adm: adm, addr: env.Broker.Addr, group: "suite-" + t.Name(), done: make(chan error, 1)}
	for _, r := range recs {
		p.Offsets = append(p.Offsets, Position{r.Partition, r.Offset})
	}
	c.Name, c.Topic, c.Group = "suite", "events", p.group
	c.Batch.Fill(connectors.Bounds{MaxEvents: 100, MaxBytes: 1 << 20, MaxAge: 100 * time.Millisecond})
	if c.Retry == (connectors.RetryPolicy{}) {
		c.Retry = connectors.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	}
	w, err := connectors.New(connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json", Sink: sink,
		Kafka: []kgo.Opt{kgo.SeedBrokers(env.Broker.Addr)}, ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.Worker = w
	rctx, cancel := context.WithCancel(ctx)
	go func() { p.done <- w.Run(rctx) }()
	var once sync.Once
	var runErr error
	p.stop = func() error {
		once.Do(func() { cancel(); runErr = <-p.done })
		return runErr
	}
	t.Cleanup(func() { _ = p.stop() })
	return p
}

// Stop stops the worker and returns what Run returned.
func (p *Pipeline) Stop() error { return p.stop() }

// Stopped waits up to d for the worker to stop on its own and returns
// what Run returned; it fails the test if the worker runs on.
func (p *Pipeline) Stopped(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for stop
		return err
	case <-time.After(d):
		t.Fatalf("the worker still runs after %s", d)
		return nil
	}
}

// Drained waits until the worker committed every event, failing the test
// after a minute.
func (p *Pipeline) Drained(t testing.TB) {
	t.Helper()
	wait.Eventually(t, time.Minute, "the connector to commit every event (lag 0)", func() bool { return p.Lag(t) == 0 })
}

// Lag is the events not yet committed by the worker's group.
func (p *Pipeline) Lag(t testing.TB) int64 {
	t.Helper()
	lags, err := p.adm.Lag(context.Background(), p.group)
	if err != nil {
		t.Fatal(err)
	}
	l := lags[p.group]
	if l.Error() != nil {
		return -1
	}
	if len(l.Lag["events"]) == 0 {
		return -1 // nothing committed yet
	}
	return l.Lag.Total()
}

// Committed is the group's committed offset of a partition; -1 for none.
func (p *Pipeline) Committed(t testing.TB, partition int32) int64 {
	t.Helper()
	offs, err := p.adm.FetchOffsets(context.Background(), p.group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup("events", partition)
	if !ok {
		return -1
	}
	return o.At
}

// DeadLetters is how many records the DLQ topic holds.
func (p *Pipeline) DeadLetters(t testing.TB) int64 {
	t.Helper()
	ends, err := p.adm.ListEndOffsets(context.Background(), "events.dlq")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// Sent is one request a destination received: when, and how many events.
type Sent struct {
	At     time.Time
	Events int
}

// MostInWindow is the most events sent within any span of d.
func MostInWindow(sent []Sent, d time.Duration) int {
	s := slices.Clone(sent)
	slices.SortFunc(s, func(a, b Sent) int { return a.At.Compare(b.At) })
	most, in, j := 0, 0, 0
	for _, x := range s {
		in += x.Events
		for x.At.Sub(s[j].At) >= d {
			in -= s[j].Events
			j++
		}
		most = max(most, in)
	}
	return most
}

// ReadDLQ returns the records of the DLQ topic, n of them at least,
// failing the test after 30 seconds.
func (p *Pipeline) ReadDLQ(t testing.TB, n int) []*kgo.Record {
	t.Helper()
	return ReadTopic(t, p.addr, "events.dlq", n)
}

// ReadTopic returns the records of a topic from its start, n of them at
// least, failing the test after 30 seconds.
func ReadTopic(t testing.TB, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}
