package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/wait"
)

const profilesYAML = `
processor:
  profiles:
    event_types: ["profile.*"]
    coalesce_interval: 1m
    rest_interval: 2m
    segments:
      - {name: frequent_visitor, expr: 'properties.visits > 3'}
      - {name: dutch, expr: 'properties.country == "NL"'}
  mask:
    rules:
      - {path: properties.email, strategy: email}
`

// clock is a settable clock shared by the test and the processor.
type clock struct{ ns atomic.Int64 }

func newClock(at string) *clock {
	c := &clock{}
	t, _ := time.Parse(time.RFC3339, at)
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }
func (c *clock) Set(at string) {
	t, _ := time.Parse(time.RFC3339, at)
	c.ns.Store(t.UnixNano())
}

// change is a profile change event.
func change(profile string, seq int64, props string) *schemas.Event {
	return &schemas.Event{
		EventID: fmt.Sprintf("chg_%s_%d", profile, seq), Timestamp: time.Date(2026, 1, 1, 0, 0, 0, int(seq)*int(time.Millisecond), time.UTC),
		AccountID: "acc_1", ResourceID: profile, Sequence: seq, EventType: "profile.property_changed",
		Extra: schemas.Fields{{Name: "properties", JSON: []byte(props)}},
	}
}

// waitIn waits until the processors have committed n input records.
func waitIn(t *testing.T, n int64, ps ...*running) {
	t.Helper()
	wait.Eventually(t, 30*time.Second, fmt.Sprintf("%d records processed", n), func() bool {
		var in int64
		for _, p := range ps {
			in += p.p.Stats().In.Load()
		}
		return in >= n
	})
}

func extra(t *testing.T, e *schemas.Event, k string, into any) {
	t.Helper()
	if err := json.Unmarshal(e.Extra.Get(k), into); err != nil {
		t.Fatalf("%s of %s: %v (%s)", k, e.EventID, err, e.Extra.Get(k))
	}
}

func byType(evs []*schemas.Event, typ string) []*schemas.Event {
	var out []*schemas.Event
	for _, e := range evs {
		if e.EventType == typ {
			out = append(out, e)
		}
	}
	return out
}

// 50 changes to one profile within an interval are one profile.updated
// with the latest value of each property; changes in the next interval
// are a second one. Stale and duplicate changes are ignored, masking
// applies to the emitted properties, and other events pass at once.
func TestProfileChangesAreCoalescedPerInterval(t *testing.T) {
	e := newEnv(t, profilesYAML)
	clk := newClock("2026-01-01T00:00:10Z")
	r := e.start("p1", func(o *Options) { o.Now = clk.Now })

	var in []*schemas.Event
	for i := int64(1); i <= 50; i++ {
		country := "DE"
		if i%2 == 0 {
			country = "NL"
		}
		in = append(in, change("prof_1", i, fmt.Sprintf(`{"visits":%d,"country":%q,"email":"ann.b@example.com"}`, i, country)))
	}
	in = append(in, change("prof_1", 30, `{"visits":-1}`), change("prof_1", 50, `{"visits":-2}`)) // stale, duplicate
	other := generatorEvent("lead_1")
	e.produce(append(in, other)...)
	waitIn(t, int64(len(in)+1), r)
	// Before the interval ends only the other event has passed; the
	// records of two partitions come in any order, so they are told
	// apart by type below, not by place.
	if got := e.events(1); len(got) != 1 || got[0].EventID != other.EventID {
		t.Fatalf("before the interval ended, events holds %d records, the first %+v; want only the other event", len(got), got[0])
	}
	clk.Set("2026-01-01T00:01:00Z")
	ups := byType(e.events(2), ProfileUpdated)
	if len(ups) != 1 {
		t.Fatalf("%d profile updates after the first interval, want 1", len(ups))
	}
	u := ups[0]
	if u.EventType != ProfileUpdated || u.ResourceID != "prof_1" || u.AccountID != "acc_1" || u.Sequence != 50 {
		t.Fatalf("emitted %+v", u)
	}
	var props map[string]any
	var n int
	extra(t, u, "properties", &props)
	extra(t, u, "changes", &n)
	if props["visits"] != 50.0 || props["country"] != "NL" || n != 50 {
		t.Fatalf("properties %v, changes %d: want the latest values of 50 changes", props, n)
	}
	if props["email"] != "a***@example.com" {
		t.Fatalf("email %v: the mask rule did not apply to the emitted properties", props["email"])
	}
	var first, last string
	extra(t, u, "first_change_at", &first)
	extra(t, u, "last_change_at", &last)
	if first != "2026-01-01T00:00:00.001Z" || last != "2026-01-01T00:00:00.050Z" {
		t.Fatalf("change timestamps %s..%s", first, last)
	}
	if s, c := r.p.Stats().Deduplicated.Load(), r.p.Stats().Coalesced.Load(); s != 2 || c != 50 {
		t.Fatalf("%d stale changes counted, want 2; %d coalesced, want 50", s, c)
	}
	if n := r.p.Stats().Profiles.Load(); n != 1 {
		t.Fatalf("%d profiles held, want 1", n)
	}

	// The next interval: two changes, one record with only them.
	e.produce(change("prof_1", 51, `{"visits":51}`), change("prof_1", 52, `{"plan":"pro"}`))
	waitIn(t, int64(len(in)+3), r)
	clk.Set("2026-01-01T00:02:00Z")
	ups = byType(e.events(3), ProfileUpdated)
	if len(ups) != 2 {
		t.Fatalf("%d profile updates after the second interval, want 2", len(ups))
	}
	var props2 map[string]any
	extra(t, ups[1], "properties", &props2)
	extra(t, ups[1], "changes", &n)
	if len(props2) != 2 || props2["visits"] != 51.0 || props2["plan"] != "pro" || n != 2 || ups[1].Sequence != 52 {
		t.Fatalf("second interval emitted %v (changes %d, seq %d)", props2, n, ups[1].Sequence)
	}
}

func generatorEvent(resource string) *schemas.Event {
	return &schemas.Event{EventID: "evt_" + resource, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), AccountID: "acc_1",
		ResourceID: resource, Sequence: 1, EventType: "lead.created", LeadData: json.RawMessage(`{"email":"x@example.com"}`)}
}

// Segments are evaluated only for profiles at rest (no change for
// rest_interval), once per change, and only a change of membership is
// emitted, with joined and left.
func TestSegmentsAreEvaluatedOnProfilesAtRest(t *testing.T) {
	e := newEnv(t, profilesYAML)
	clk := newClock("2026-01-01T00:00:30Z")
	r := e.start("p1", func(o *Options) { o.Now = clk.Now })
	var produced int64
	step := func(at string, evs ...*schemas.Event) {
		t.Helper()
		clk.Set(at)
		if len(evs) > 0 {
			e.produce(evs...)
			produced += int64(len(evs))
			waitIn(t, produced, r)
		}
	}

	step("2026-01-01T00:00:30Z", change("p", 1, `{"visits":5,"country":"DE"}`))
	step("2026-01-01T00:01:00Z") // the update of seq 1
	e.events(1)
	step("2026-01-01T00:01:30Z", change("p", 2, `{"visits":6}`))
	step("2026-01-01T00:02:00Z") // the update of seq 2; still changing: no evaluation
	got := e.events(2)
	if len(byType(got, ProfileSegmentsChanged)) != 0 {
		t.Fatalf("a profile that kept changing was evaluated: %+v", got)
	}

	step("2026-01-01T00:04:00Z") // quiet since 1:30: evaluated, joins frequent_visitor
	got = e.events(3)
	sc := byType(got, ProfileSegmentsChanged)
	var segs, joined, left []string
	extra(t, sc[0], "segments", &segs)
	extra(t, sc[0], "joined", &joined)
	extra(t, sc[0], "left", &left)
	if !slices.Equal(segs, []string{"frequent_visitor"}) || !slices.Equal(joined, []string{"frequent_visitor"}) || len(left) != 0 || sc[0].Sequence != 2 {
		t.Fatalf("segments %v joined %v left %v (seq %d)", segs, joined, left, sc[0].Sequence)
	}

	step("2026-01-01T00:06:00Z") // at rest, but evaluated since its last change: nothing

	step("2026-01-01T00:06:10Z", change("p", 3, `{"visits":2,"country":"NL"}`))
	step("2026-01-01T00:08:10Z") // rest tick at 8:00 finds it quiet for 1m50s only
	step("2026-01-01T00:10:00Z") // now at rest: joins dutch, leaves frequent_visitor
	got = e.events(5)            // + the update of seq 3
	sc = byType(got, ProfileSegmentsChanged)
	if len(sc) != 2 {
		t.Fatalf("%d segment changes, want 2: %+v", len(sc), got)
	}
	extra(t, sc[1], "segments", &segs)
	extra(t, sc[1], "joined", &joined)
	extra(t, sc[1], "left", &left)
	if !slices.Equal(segs, []string{"dutch"}) || !slices.Equal(joined, []string{"dutch"}) || !slices.Equal(left, []string{"frequent_visitor"}) {
		t.Fatalf("segments %v joined %v left %v", segs, joined, left)
	}

	// A change that keeps membership: an update, and no segment record.
	step("2026-01-01T00:10:30Z", change("p", 4, `{"name":"Ann"}`))
	step("2026-01-01T00:14:00Z")
	got = e.events(6)
	if len(byType(got, ProfileSegmentsChanged)) != 2 || len(byType(got, ProfileUpdated)) != 4 {
		t.Fatalf("after a change that kept membership: %d updates, %d segment changes", len(byType(got, ProfileUpdated)), len(byType(got, ProfileSegmentsChanged)))
	}
}

// A processor killed in the transaction that emits pending profiles, and
// its replacement, emit each pending profile exactly once; and so do two
// instances between which the partitions move.
func TestPendingProfilesAreEmittedOnceAcrossCrashAndRebalance(t *testing.T) {
	e := newEnv(t, profilesYAML)
	clk := newClock("2026-01-01T00:00:10Z")
	var in []*schemas.Event
	for p := range 60 {
		for s := int64(1); s <= 10; s++ {
			in = append(in, change(fmt.Sprintf("prof_%02d", p), s, fmt.Sprintf(`{"visits":%d}`, s)))
		}
	}
	var mu sync.Mutex
	crash := true
	a := e.start("p1", func(o *Options) {
		o.Now = clk.Now
		o.beforeEnd = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if crash && !clk.Now().Before(time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)) {
				crash = false
				return errCrash // the tick's records are produced, not committed
			}
			return nil
		}
	})
	e.produce(in...)
	waitIn(t, int64(len(in)), a)
	clk.Set("2026-01-01T00:01:00Z")
	select {
	case err := <-a.done:
		close(a.done)
		if !errors.Is(err, errCrash) {
			t.Fatalf("processor ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the crash hook never ran")
	}
	// The replacement fences the crashed one; its first tick is the
	// next boundary.
	a = e.start("p1", func(o *Options) { o.Now = clk.Now })
	wait.Eventually(t, 30*time.Second, "the replacement owns the partitions", func() bool { return len(a.p.profiles.Partitions()) == 6 })
	clk.Set("2026-01-01T00:02:00Z")
	got := e.events(60)
	seen := map[string]int{}
	for _, ev := range got {
		var n int
		extra(t, ev, "changes", &n)
		if ev.EventType != ProfileUpdated || n != 10 || ev.Sequence != 10 {
			t.Fatalf("emitted %+v (changes %d)", ev, n)
		}
		seen[ev.ResourceID]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s emitted %d times", id, n)
		}
	}

	// Next interval: changes, then a second instance joins and takes
	// partitions (and their pending profiles) before the tick.
	var more []*schemas.Event
	for p := range 60 {
		more = append(more, change(fmt.Sprintf("prof_%02d", p), 11, `{"visits":11}`))
	}
	e.produce(more...)
	waitIn(t, int64(len(more)), a)
	b := e.start("p2", func(o *Options) { o.Now = clk.Now })
	wait.Eventually(t, 30*time.Second, "both instances own partitions", func() bool {
		return len(a.p.profiles.Partitions()) > 0 && len(b.p.profiles.Partitions()) > 0 && len(a.p.profiles.Partitions())+len(b.p.profiles.Partitions()) == 6
	})
	clk.Set("2026-01-01T00:03:00Z")
	got = e.events(120)
	seen = map[string]int{}
	for _, ev := range got[60:] {
		if ev.Sequence != 11 {
			t.Fatalf("second interval emitted %+v", ev)
		}
		seen[ev.ResourceID]++
	}
	if len(seen) != 60 {
		t.Fatalf("%d profiles emitted in the second interval, want 60", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s emitted %d times after the rebalance", id, n)
		}
	}
	if !strings.HasPrefix(got[60].EventID, ProfileUpdated+":") {
		t.Fatalf("event id %s", got[60].EventID)
	}
}

// A transaction that takes longer than the coalesce interval (a slow
// broker) does not starve the raw topic: every loop has a tick due, and
// records are still read and processed.
func TestSlowTransactionsDoNotStarveRecords(t *testing.T) {
	e := newEnv(t, strings.Replace(profilesYAML, "coalesce_interval: 1m", "coalesce_interval: 100ms", 1))
	r := e.start("p1", func(o *Options) {
		o.beforeEnd = func(context.Context) error { time.Sleep(300 * time.Millisecond); return nil }
	})
	e.produce(generatorEvent("lead_1"), generatorEvent("lead_2"), change("prof_1", 1, `{"visits":1}`))
	waitIn(t, 3, r)
}
