package connectors_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	httpdest "github.com/firehose/firehose/connectors/http"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// partner is a webhook whose answer to each batch is chosen by refuse
// (0: stored, 204), that answers 429 to a request beyond limit in flight
// (0: no limit), and that takes delay to answer.
type partner struct {
	refuse func(evs []*schemas.Event) int
	limit  int
	delay  time.Duration

	mu       sync.Mutex
	flight   int
	stored   map[string]bool // event ids
	sent     []connectortest.Sent
	answers  []int // statuses, in order
	refusals int   // 429s
}

func (p *partner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.flight++
	over := p.limit > 0 && p.flight > p.limit
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.flight--
		p.mu.Unlock()
	}()
	status := http.StatusTooManyRequests
	var evs []*schemas.Event
	if !over {
		time.Sleep(p.delay)
		ds, err := connectortest.Decode(body, "json", "none")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, d := range ds {
			evs = append(evs, d.Event)
		}
		status = http.StatusNoContent
		if p.refuse != nil {
			if s := p.refuse(evs); s != 0 {
				status = s
			}
		}
	}
	p.mu.Lock()
	p.answers = append(p.answers, status)
	if over {
		p.refusals++
	}
	if status == http.StatusNoContent {
		p.sent = append(p.sent, connectortest.Sent{At: time.Now(), Events: len(evs)})
		for _, e := range evs {
			p.stored[e.EventID] = true
		}
	}
	p.mu.Unlock()
	w.WriteHeader(status)
}

func (p *partner) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.stored)
}

// hookPipeline runs a webhook connector with c's settings (JSON bodies)
// delivering evs to p.
func hookPipeline(t *testing.T, p *partner, evs []*schemas.Event, c connectors.Config) *connectortest.Pipeline {
	p.stored = map[string]bool{}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	hc := httpdest.Config{URL: srv.URL}
	hc.Defaults()
	c.Encoding, c.Compression = "json", "none"
	return connectortest.StartPipeline(t, httpdest.New(hc), evs, c)
}

// A webhook that answers 404 for a deleted tenant: a rule drops those
// batches, the connector drains to lag 0, and nothing reaches the DLQ.
func TestOnErrorDropDrainsWithoutDeadLetters(t *testing.T) {
	p := &partner{refuse: func(evs []*schemas.Event) int {
		if slices.ContainsFunc(evs, func(e *schemas.Event) bool { return e.AccountID == "acc_1" }) {
			return http.StatusNotFound
		}
		return 0
	}}
	evs := generator.Unique(11, 60, 3000)
	pl := hookPipeline(t, p, evs, connectors.Config{
		Batch:   connectors.Bounds{MaxEvents: 20},
		OnError: []connectors.ErrorRule{{Status: connectors.Strings{"404", "410"}, Action: connectors.ActionDrop}},
	})
	pl.Drained(t)
	dropped := pl.Worker.Stats().Dropped.Load()
	if dropped == 0 || int(dropped)+p.count() != len(evs) {
		t.Fatalf("%d dropped and %d stored of %d", dropped, p.count(), len(evs))
	}
	if n := pl.DeadLetters(t); n != 0 {
		t.Fatalf("%d dead letters: a dropped batch must not reach the DLQ", n)
	}
	for _, e := range evs {
		if e.AccountID == "acc_1" && p.stored[e.EventID] {
			t.Fatalf("event %s of the deleted tenant was stored", e.EventID)
		}
	}
}

// A webhook that answers 400 to one batch: a stop rule stops the
// connector, its partition committed no further than that batch's first
// event, and nothing reaches the DLQ.
func TestOnErrorStopCommitsNothingPastTheBatch(t *testing.T) {
	evs := generator.Unique(12, 60, 3000)
	poison := evs[1700].EventID
	p := &partner{refuse: func(b []*schemas.Event) int {
		if slices.ContainsFunc(b, func(e *schemas.Event) bool { return e.EventID == poison }) {
			return http.StatusBadRequest
		}
		return 0
	}}
	pl := hookPipeline(t, p, evs, connectors.Config{
		Batch:   connectors.Bounds{MaxEvents: 20},
		OnError: []connectors.ErrorRule{{Status: connectors.Strings{"400", "422"}, Action: connectors.ActionStop}},
	})
	if err := pl.Stopped(t, time.Minute); !errors.Is(err, connectors.ErrStopped) {
		t.Fatalf("the worker ended with %v, want it stopped by the rule", err)
	}
	at := pl.Offsets[1700]
	if c := pl.Committed(t, at.Partition); c > at.Offset {
		t.Fatalf("partition %d committed to %d, past the refused event at %d", at.Partition, c, at.Offset)
	}
	if p.stored[poison] {
		t.Fatal("the refused event was stored")
	}
	if n := pl.DeadLetters(t); n != 0 {
		t.Fatalf("%d dead letters after a stop", n)
	}
}

// rate_limit: {events_per_second: 1000} keeps every 2-second window of
// what the receiver gets under 2,400 events, and everything arrives.
func TestRateLimitKeepsEveryWindow(t *testing.T) {
	p := &partner{}
	evs := generator.Unique(13, 60, 5000)
	pl := hookPipeline(t, p, evs, connectors.Config{
		Batch:     connectors.Bounds{MaxEvents: 100},
		RateLimit: connectors.RateLimit{EventsPerSecond: 1000},
	})
	pl.Drained(t)
	if p.count() != len(evs) {
		t.Fatalf("%d of %d events stored", p.count(), len(evs))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if most := connectortest.MostInWindow(p.sent, 2*time.Second); most > 2400 {
		t.Fatalf("%d events within 2 s under a limit of 1,000/s", most)
	}
}

// max_in_flight: auto against a receiver that answers 429 beyond 6
// requests in flight: after warm-up under 10 % of requests are refused,
// and it delivers at least 80 % of what a fixed window of 6 does. Both
// runs are bound by the receiver's 50 ms answers, not by this machine.
func TestAutoConcurrencyFindsTheReceiversLimit(t *testing.T) {
	evs := generator.Unique(14, 300, 8000)
	run := func(inFlight connectors.InFlight) (perSecond float64, refused float64, p *partner) {
		p = &partner{limit: 6, delay: 50 * time.Millisecond}
		pl := hookPipeline(t, p, evs, connectors.Config{Batch: connectors.Bounds{MaxEvents: 20}, MaxInFlight: inFlight})
		pl.Drained(t)
		if err := pl.Stop(); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		// After warm-up: from the first fifth of the events stored to
		// the last, and from the 40th answer on.
		n, from := 0, 0
		for from < len(p.sent) && n < len(evs)/5 {
			n += p.sent[from].Events
			from++
		}
		elapsed := p.sent[len(p.sent)-1].At.Sub(p.sent[from-1].At)
		warm := p.answers[min(40, len(p.answers)):]
		tooMany := 0
		for _, s := range warm {
			if s == http.StatusTooManyRequests {
				tooMany++
			}
		}
		return float64(len(evs)-n) / elapsed.Seconds(), float64(tooMany) / float64(max(1, len(warm))), p
	}
	fixed, fixedRefused, _ := run(6)
	auto, autoRefused, _ := run(connectors.InFlightAuto)
	t.Logf("fixed 6: %.0f events/s, %.1f%% refused; auto: %.0f events/s (%.0f%% of fixed), %.1f%% refused after warm-up",
		fixed, 100*fixedRefused, auto, 100*auto/fixed, 100*autoRefused)
	if fixedRefused != 0 {
		t.Fatalf("a fixed window of 6 was refused %.1f%% of requests: the receiver's limit is wrong", 100*fixedRefused)
	}
	if autoRefused >= 0.10 {
		t.Fatalf("auto: %.1f%% of requests refused after warm-up, want under 10%%", 100*autoRefused)
	}
	if auto < 0.8*fixed {
		t.Fatalf("auto delivered %.0f events/s, under 80%% of a fixed window's %.0f", auto, fixed)
	}
}
