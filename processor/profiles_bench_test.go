package processor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// profileStage returns a profiles stage holding partition 0, without
// Kafka: the state topic is only read on Load.
func profileStage(tb testing.TB, now func() time.Time) *Profiles {
	cfg := ProfilesConfig{EventTypes: []string{"profile.*"}, PropertiesField: "properties",
		CoalesceInterval: 2 * time.Minute, RestInterval: 2 * time.Minute, TTL: 720 * time.Hour,
		Segments: []Segment{{Name: "frequent_visitor", Expr: "properties.visits > 3"}, {Name: "dutch", Expr: `properties.country == "NL"`}}}
	p, err := NewProfiles(cfg, "firehose.state", now, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	p.parts.put(0, newProfilePart())
	return p
}

// propsOf returns a properties object of n properties, changed by step.
func propsOf(n, step int) json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"visits":`)
	fmt.Fprint(&b, step)
	b.WriteString(`,"country":"NL"`)
	for i := 2; i < n; i++ {
		fmt.Fprintf(&b, `,"prop_%02d":"value %d of a typical length"`, i, step)
	}
	b.WriteString("}")
	return json.RawMessage(b.String())
}

// With 10 changes per profile in an interval, the stage emits one record
// per profile: output = input / 10.
func TestCoalescingCutsOutputTenfold(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(t, func() time.Time { return now })
	rec := &kgo.Record{Partition: 0}
	in := 0
	for step := 1; step <= 10; step++ {
		for i := range 1000 {
			e := change(fmt.Sprintf("prof_%04d", i), int64(step), string(propsOf(20, step)))
			keep, err := p.Apply(rec, e)
			if err != nil || keep {
				t.Fatalf("change kept %v, %v", keep, err)
			}
			in++
		}
	}
	out := p.Tick(0, now.Add(2*time.Minute), true, false)
	if len(out) != in/10 {
		t.Fatalf("%d changes in, %d records out; want %d", in, len(out), in/10)
	}
	var props map[string]any
	if err := json.Unmarshal(out[0].Extra.Get("properties"), &props); err != nil || props["visits"] != 10.0 || len(props) != 20 {
		t.Fatalf("coalesced properties %v (%v)", props, err)
	}
}

// BenchmarkProfileChanges is the stage's cost per change (20 properties
// each, 10,000 profiles) including its share of the interval's
// emissions and state records, and the state each profile costs.
func BenchmarkProfileChanges(b *testing.B) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(b, func() time.Time { return now })
	rec := &kgo.Record{Partition: 0}
	const profiles = 10000
	evs := make([]*schemas.Event, 0, profiles*10)
	for step := 1; step <= 10; step++ {
		for i := range profiles {
			evs = append(evs, change(fmt.Sprintf("prof_%05d", i), int64(step), string(propsOf(20, step))))
		}
	}
	b.ReportAllocs()
	seq := int64(0)
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		if i%len(evs) == 0 {
			seq += 10
		}
		e.Sequence = seq + int64(i%len(evs)/profiles)
		if _, err := p.Apply(rec, e); err != nil {
			b.Fatal(err)
		}
		if i%len(evs) == len(evs)-1 {
			now = now.Add(2 * time.Minute)
			p.Tick(0, now, true, true)
			p.Records(0, nil)
			p.End(true)
		}
	}
	b.StopTimer()
	var state int
	for _, prof := range p.parts.get(0).profiles {
		v, _ := json.Marshal(prof)
		state += len(v)
	}
	b.ReportMetric(float64(state)/float64(len(p.parts.get(0).profiles)), "state-B/profile")
}

// BenchmarkProfileMemory reports the heap one held profile of 20
// properties costs, once its pending changes were emitted.
func BenchmarkProfileMemory(b *testing.B) {
	const profiles = 100000
	for b.Loop() {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		p := profileStage(b, func() time.Time { return now })
		rec := &kgo.Record{Partition: 0}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range profiles {
			if _, err := p.Apply(rec, change(fmt.Sprintf("prof_%06d", i), 1, string(propsOf(20, i)))); err != nil {
				b.Fatal(err)
			}
		}
		p.Tick(0, now.Add(2*time.Minute), true, false)
		p.Records(0, nil)
		p.End(true)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/profiles, "heap-B/profile")
		runtime.KeepAlive(p)
	}
}

// A profile change without its properties object is rejected as invalid
// (the pipeline dead-letters it), and changes nothing.
func TestProfileChangeWithoutPropertiesIsInvalid(t *testing.T) {
	p := profileStage(t, time.Now)
	for _, props := range []string{"", `[1,2]`, `"visits"`} {
		e := change("prof_1", 1, props)
		if props == "" {
			e.Extra.Delete("properties")
		}
		keep, err := p.Apply(&kgo.Record{}, e)
		if keep || schemas.ClassOf(err) != schemas.ClassInvalid || !strings.Contains(err.Error(), "properties: a profile change must hold its changed properties in an object") {
			t.Errorf("properties %q: keep %v, %v", props, keep, err)
		}
	}
	if len(p.parts.get(0).profiles) != 0 {
		t.Fatal("a rejected change made a profile")
	}
}

// The snapshot keeps every property's latest value across merges, as
// valid JSON whatever the keys hold.
func TestSnapshotMerge(t *testing.T) {
	snap := mergeSnapshot(nil, map[string]json.RawMessage{"b": json.RawMessage(`1`), "a\"\u0000é": json.RawMessage(`{"x":[1]}`)})
	snap = mergeSnapshot(snap, map[string]json.RawMessage{"b": json.RawMessage(`2`), "c": json.RawMessage(`null`)})
	var got map[string]any
	if err := json.Unmarshal(snap, &got); err != nil {
		t.Fatalf("%s: %v", snap, err)
	}
	if len(got) != 3 || got["b"] != 2.0 || got["c"] != nil || got["a\"\u0000é"].(map[string]any)["x"] == nil {
		t.Fatalf("merged %s", snap)
	}
	if string(snap) != `{"a\"\u0000é":{"x":[1]},"b":2,"c":null}` {
		t.Fatalf("merged %s: changed properties keep their place, new ones follow sorted", snap)
	}
}

// A profile quiet for its TTL is forgotten, with a tombstone for its
// state; resource_types select changes as event_types do.
func TestProfilesExpireAndMatchByResourceType(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(t, func() time.Time { return now })
	p.cfg.ResourceTypes = []string{"contact"}
	byType := change("prof_1", 1, `{"visits":1}`)
	byResource := change("prof_2", 1, `{"visits":1}`)
	byResource.EventType, byResource.ResourceType = "contact.changed", "contact"
	other := change("lead_1", 1, `{"visits":1}`)
	other.EventType, other.ResourceType = "lead.created", "lead"
	for _, e := range []*schemas.Event{byType, byResource, other} {
		keep, err := p.Apply(&kgo.Record{}, e)
		if err != nil || keep != (e == other) {
			t.Fatalf("%s: keep %v, %v", e.EventType, keep, err)
		}
	}
	p.Records(0, nil)
	p.End(true)
	if len(p.parts.get(0).profiles) != 2 {
		t.Fatalf("%d profiles, want 2", len(p.parts.get(0).profiles))
	}
	p.Tick(0, now.Add(p.cfg.TTL-time.Second), true, true)
	p.Records(0, nil)
	p.End(true)
	if len(p.parts.get(0).profiles) != 2 {
		t.Fatal("forgotten before the TTL")
	}
	p.Tick(0, now.Add(p.cfg.TTL), true, true)
	recs := p.Records(0, nil)
	p.End(true)
	if len(p.parts.get(0).profiles) != 0 || len(recs) != 2 || recs[0].Value != nil || !strings.HasPrefix(string(recs[0].Key), profileKeyPrefix) {
		t.Fatalf("after the TTL: %d profiles, state records %v", len(p.parts.get(0).profiles), recs)
	}
}

// An aborted transaction leaves the profiles as they were before it: the
// records come again and must not count twice or look stale.
func TestProfilesUndoAnAbortedTransaction(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(t, func() time.Time { return now })
	apply := func(e *schemas.Event) {
		if _, err := p.Apply(&kgo.Record{}, e); err != nil {
			t.Fatal(err)
		}
	}
	apply(change("prof_1", 1, `{"visits":1}`))
	p.End(false)
	if len(p.parts.get(0).profiles) != 0 {
		t.Fatal("an aborted change made a profile")
	}
	apply(change("prof_1", 1, `{"visits":1}`))
	p.End(true)
	apply(change("prof_1", 2, `{"visits":2}`))
	p.Tick(0, now.Add(2*time.Minute), true, true)
	p.End(false)
	prof := p.parts.get(0).profiles[string(appendStateKey(nil, "acc_1", "prof_1"))]
	if prof.Seq != 1 || prof.Changes != 1 || string(prof.Pending["visits"]) != "1" || prof.Snap != nil {
		t.Fatalf("after an abort: %+v", prof)
	}
	apply(change("prof_1", 2, `{"visits":2}`)) // the records come again
	out := p.Tick(0, now.Add(2*time.Minute), true, false)
	if len(out) != 1 || string(out[0].Extra.Get("changes")) != "2" {
		t.Fatalf("emitted %v", out)
	}
}
