package connectors_test

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

// scripted is an object-store sink (one partition's batches by offset)
// that answers each batch by a script keyed by its first offset: a list of
// answers for its attempts, the last repeated.
type scripted struct {
	mu        sync.Mutex
	script    map[int64][]error
	attempts  map[int64]int
	delivered map[int64]int // events accepted, by first offset
}

func (s *scripted) PathTemplate() string        { return "" }
func (s *scripted) Close(context.Context) error { return nil }
func (s *scripted) Deliver(_ context.Context, b *connectors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	answers := s.script[b.FirstOffset]
	n := s.attempts[b.FirstOffset]
	s.attempts[b.FirstOffset]++
	var err error
	if len(answers) > 0 {
		err = answers[min(n, len(answers)-1)]
	}
	if err == nil {
		s.delivered[b.FirstOffset] = len(b.Events)
	}
	return err
}

// scriptedRecords is a record sink that answers each record by a script
// keyed by the record's offset in the topic read: a list of answers for its
// attempts, the last repeated.
type scriptedRecords struct {
	offsets  map[string]int64 // by event id
	mu       sync.Mutex
	script   map[int64][]error
	writes   map[int64]int // times each record was written
	accepted map[int64]int // times each record was accepted
}

func (s *scriptedRecords) KeyTemplate() *connectors.Template {
	t, _ := connectors.ParseTemplate("{{resource_id}}")
	return t
}
func (s *scriptedRecords) Close(context.Context) error { return nil }
func (s *scriptedRecords) Write(_ context.Context, recs []*connectors.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			r.Err = connectors.Permanent(err, "")
			continue
		}
		off := s.offsets[e.EventID]
		n := s.writes[off]
		s.writes[off]++
		r.Err = nil
		if answers := s.script[off]; len(answers) > 0 {
			r.Err = answers[min(n, len(answers)-1)]
		}
		if r.Err == nil {
			s.accepted[off]++
		}
	}
}

// oneBatchTopic returns a broker whose "events" topic (one partition)
// holds n events, and a DLQ topic.
func oneBatchTopic(t *testing.T, n int) (*embedded.Broker, *kadm.Client) {
	br, adm, _ := eventsBroker(t, 1, generator.Unique(3, 7, n))
	return br, adm
}

func runScripted(t *testing.T, br *embedded.Broker, s connectors.Destination, mod func(*connectors.Config)) (*connectors.Worker, context.CancelFunc, chan error) {
	c := connectors.Config{Name: "script", Topic: "events", Group: "script", Encoding: "ndjson", Compression: "none",
		Batch: connectors.Bounds{MaxEvents: 10, MaxBytes: 1 << 20, MaxAge: time.Hour},
		Retry: connectors.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}}
	if mod != nil {
		mod(&c)
	}
	w, err := connectors.New(connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json",
		Sink: s, Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, cancel, done
}

func committed(t *testing.T, adm *kadm.Client) int64 {
	os, err := adm.FetchOffsets(context.Background(), "script")
	if err != nil {
		return -1
	}
	o, ok := os.Lookup("events", 0)
	if !ok {
		return -1
	}
	return o.At
}

func deadLetters(t *testing.T, br *embedded.Broker, n int) []*kgo.Record {
	return connectortest.ReadTopic(t, br.Addr, "events.dlq", n)
}

// Each answer a destination can give has its outcome: retryable errors are
// retried until the batch is accepted; a permanent one dead-letters the
// batch; retries running out dead-letters the batch as retries-exhausted. The partition goes on past
// each, and commits past each once it has its outcome.
func TestDeliveryOutcomesByAnswer(t *testing.T) {
	br, adm := oneBatchTopic(t, 40)
	s := &scripted{attempts: map[int64]int{}, delivered: map[int64]int{}, script: map[int64][]error{
		0:  {connectors.Retryable(errors.New("busy"), 0), connectors.Retryable(errors.New("busy"), 0), nil},
		10: {connectors.Permanent(errors.New("rejected"), `{"error":"bad payload"}`)},
		30: {errors.New("down")},
	}}
	w, cancel, done := runScripted(t, br, s, nil)
	wait.Eventually(t, time.Minute, "everything committed", func() bool { return committed(t, adm) == 40 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	if s.attempts[0] != 3 || s.delivered[0] != 10 || s.attempts[10] != 1 || s.delivered[20] != 10 || s.attempts[30] != 5 {
		t.Errorf("attempts %v, delivered %v", s.attempts, s.delivered)
	}
	s.mu.Unlock()
	if st := w.Stats(); st.Delivered.Load() != 20 || st.DeadLettered.Load() != 20 {
		t.Errorf("delivered %d, dead-lettered %d; want 20 and 20", st.Delivered.Load(), st.DeadLettered.Load())
	}
	classes := map[string]int{}
	for _, r := range deadLetters(t, br, 20) {
		classes[dlq.Header(r, dlq.HeaderClass)]++
		if dlq.Header(r, dlq.HeaderClass) == "permanent" && dlq.Header(r, dlq.HeaderResponse) != `{"error":"bad payload"}` {
			t.Errorf("the destination's answer is not kept: %q", dlq.Header(r, dlq.HeaderResponse))
		}
	}
	if classes["permanent"] != 10 || classes["retries-exhausted"] != 10 {
		t.Errorf("dead letters by class %v; want 10 permanent, 10 retries-exhausted", classes)
	}
}

// A record sink's answers are per record: the runtime sends again only
// the records not accepted, dead-letters a refused record alone with its
// own reason, and dead-letters a record whose retries ran out; an attempt
// that had records accepted does not count against the retries. Every
// other record is written exactly once, and everything is committed.
func TestRecordOutcomesByAnswer(t *testing.T) {
	evs := generator.Unique(3, 7, 40)
	br, adm, _ := eventsBroker(t, 1, evs)
	offsets := map[string]int64{}
	for i, e := range evs {
		offsets[e.EventID] = int64(i)
	}
	busy := connectors.Retryable(errors.New("throttled"), 0)
	s := &scriptedRecords{offsets: offsets, writes: map[int64]int{}, accepted: map[int64]int{}, script: map[int64][]error{
		3:  {busy, busy, nil},
		5:  {connectors.Permanent(errors.New("record 5 is too large"), `{"error":"too large"}`)},
		12: {busy},
		25: {connectors.Permanent(errors.New("record 25 is invalid"), "")},
	}}
	// A destination that keeps order cuts a partition's batches by lane.
	w, cancel, done := runScripted(t, br, s, func(c *connectors.Config) { c.Batch.MaxAge = 100 * time.Millisecond })
	wait.Eventually(t, time.Minute, "everything committed", func() bool { return committed(t, adm) == 40 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	for off := int64(0); off < 40; off++ {
		want, accepted := 1, 1
		switch off {
		case 3:
			want = 3
		case 5, 25:
			accepted = 0
		case 12:
			// 5 attempts without progress; writes in which other
			// records were accepted come on top.
			want, accepted = max(s.writes[off], 5), 0
		}
		if s.writes[off] != want || s.accepted[off] != accepted {
			t.Errorf("record %d written %d times and accepted %d; want %d and %d", off, s.writes[off], s.accepted[off], want, accepted)
		}
	}
	s.mu.Unlock()
	if st := w.Stats(); st.Delivered.Load() != 37 || st.DeadLettered.Load() != 3 {
		t.Errorf("delivered %d, dead-lettered %d; want 37 and 3", st.Delivered.Load(), st.DeadLettered.Load())
	}
	got := map[string]string{}
	for _, r := range deadLetters(t, br, 3) {
		got[dlq.Header(r, dlq.HeaderSourceOffset)] = dlq.Header(r, dlq.HeaderClass) + ": " + dlq.Header(r, dlq.HeaderMessage) + " | " + dlq.Header(r, dlq.HeaderResponse)
	}
	for off, want := range map[string]string{"5": "permanent: .*record 5 is too large \\| \\{\"error\":\"too large\"\\}$", "12": "retries-exhausted: .*throttled \\| $", "25": "permanent: .*record 25 is invalid \\| $"} {
		if !regexp.MustCompile(want).MatchString(got[off]) {
			t.Errorf("dead letter of offset %s: %q, want %s", off, got[off], want)
		}
	}
}

// With on_permanent_error: stop, a rejected batch stops the connector,
// and nothing past it is committed.
func TestStopPolicyCommitsNothingPastTheRejection(t *testing.T) {
	br, adm := oneBatchTopic(t, 30)
	s := &scripted{attempts: map[int64]int{}, delivered: map[int64]int{}, script: map[int64][]error{
		10: {connectors.Permanent(errors.New("rejected"), "")},
	}}
	_, cancel, done := runScripted(t, br, s, func(c *connectors.Config) { c.OnPermanentError = "stop" })
	defer cancel()
	select {
	case err := <-done:
		if !errors.Is(err, connectors.ErrStopped) {
			t.Fatalf("stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the connector did not stop")
	}
	if c := committed(t, adm); c > 10 {
		t.Fatalf("committed %d, past the rejected batch at 10", c)
	}
}

// A batch whose dead letters cannot be written (the DLQ refuses them) is
// tried again after a pause, not in a hot loop, and delivered once the
// DLQ takes them.
func TestUnwritableDeadLettersAreRetriedWithAPause(t *testing.T) {
	br, adm := oneBatchTopic(t, 10)
	var refuse atomic.Bool
	refuse.Store(true)
	// The events were produced before the worker started: every produce
	// now is the worker's, to the DLQ.
	br.RefuseProduce(kerr.TopicAuthorizationFailed.Code, refuse.Load)
	s := &scripted{attempts: map[int64]int{}, delivered: map[int64]int{}, script: map[int64][]error{
		0: {connectors.Permanent(errors.New("rejected"), "")},
	}}
	_, cancel, done := runScripted(t, br, s, nil)
	defer func() { cancel(); <-done }()
	wait.Eventually(t, time.Minute, "a first attempt", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.attempts[0] > 0 })
	time.Sleep(2 * time.Second)
	s.mu.Lock()
	n := s.attempts[0]
	s.mu.Unlock()
	if n > 10 {
		t.Fatalf("%d attempts in about 2s while the DLQ refused: a hot loop", n)
	}
	if c := committed(t, adm); c > 0 {
		t.Fatalf("committed %d while the batch's dead letters were not stored", c)
	}
	refuse.Store(false)
	wait.Eventually(t, time.Minute, "the batch dead-lettered and committed once the DLQ takes it", func() bool { return committed(t, adm) == 10 })
}
