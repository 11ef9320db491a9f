package processor

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

func tenantEvent(account, resource string, seq int64) *schemas.Event {
	return &schemas.Event{EventID: account + "-" + resource, Timestamp: time.Now().UTC(), AccountID: account,
		ResourceID: resource, Sequence: seq, EventType: "lead.created"}
}

// Two accounts' resources of one id are two resources: a high sequence of
// account A's never makes dedupe drop account B's event, and each account's
// own duplicates are still dropped.
func TestDedupeKeepsAccountsApart(t *testing.T) {
	d := NewDeduper("firehose.state", "events.dlq", time.Hour, nil, time.Now, slog.New(slog.DiscardHandler))
	d.parts.put(0, newDedupePart(time.Now()))
	rec := &kgo.Record{Key: []byte("shared")}
	for _, tc := range []struct {
		account string
		seq     int64
		keep    bool
	}{{"acc_a", 1_000_000, true}, {"acc_b", 1, true}, {"acc_b", 2, true}, {"acc_a", 5, false}, {"acc_b", 2, false}} {
		keep, err := d.Apply(rec, tenantEvent(tc.account, "shared", tc.seq))
		if err != nil || keep != tc.keep {
			t.Fatalf("%s sequence %d: keep %v (%v), want %v", tc.account, tc.seq, keep, err, tc.keep)
		}
		d.End(true)
	}
}

// State written before it was kept per account (keyed by the resource id
// alone) still stands for the resource until an account writes its own,
// and expires with the TTL, its tombstone written then.
func TestDedupeReadsStateWrittenBeforeAccounts(t *testing.T) {
	now := time.Now()
	d := NewDeduper("firehose.state", "events.dlq", time.Hour, nil, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	dp := newDedupePart(now)
	d.load(dp, &kgo.Record{Key: []byte("lead_1"), Value: []byte(`{"seq":7,"at":` + jsonInt(now.UnixMilli()) + `}`)}, now.UnixMilli())
	d.parts.put(0, dp)
	rec := &kgo.Record{Key: []byte("lead_1")}
	if keep, _ := d.Apply(rec, tenantEvent("acc_a", "lead_1", 7)); keep {
		t.Fatal("a duplicate of the earlier state passed")
	}
	if keep, _ := d.Apply(rec, tenantEvent("acc_a", "lead_1", 8)); !keep {
		t.Fatal("a new sequence was dropped")
	}
	out := d.Records(0, nil)
	if len(out) != 1 || string(out[0].Key) != string(appendStateKey(nil, "acc_a", "lead_1")) {
		t.Fatalf("state records %v, want the account's own key", out)
	}
	d.End(true)
	now = now.Add(2 * time.Hour)
	out = d.Records(0, nil)
	tombstones := map[string]bool{}
	for _, r := range out {
		if r.Value == nil {
			tombstones[string(r.Key)] = true
		}
	}
	if len(tombstones) != 2 || !tombstones["lead_1"] || !tombstones[string(appendStateKey(nil, "acc_a", "lead_1"))] {
		t.Fatalf("after the TTL, tombstones %v, want the old key's and the new one's", tombstones)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Two accounts change the properties of one profile id: each account's
// profile.updated holds its own properties only, under its own account,
// with an id of its own.
func TestProfilesKeepAccountsApart(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(t, func() time.Time { return now })
	a := change("prof_shared", 1, `{"salary":90000,"diagnosis":"private"}`)
	a.AccountID = "acc_a"
	b := change("prof_shared", 1, `{"visits":2}`)
	b.AccountID = "acc_b"
	for _, e := range []*schemas.Event{a, b} {
		if _, err := p.Apply(&kgo.Record{}, e); err != nil {
			t.Fatal(err)
		}
	}
	out := p.Tick(0, now.Add(3*time.Minute), true, false)
	if len(out) != 2 {
		t.Fatalf("emitted %d events, want one per account", len(out))
	}
	byAccount := map[string]*schemas.Event{}
	for _, e := range out {
		byAccount[e.AccountID] = e
		if e.ResourceID != "prof_shared" {
			t.Fatalf("resource %q", e.ResourceID)
		}
	}
	if props := string(byAccount["acc_b"].Extra.Get("properties")); strings.Contains(props, "salary") || strings.Contains(props, "diagnosis") || !strings.Contains(props, "visits") {
		t.Fatalf("account B's profile.updated holds %s", props)
	}
	if props := string(byAccount["acc_a"].Extra.Get("properties")); strings.Contains(props, "visits") || !strings.Contains(props, "salary") {
		t.Fatalf("account A's profile.updated holds %s", props)
	}
	if byAccount["acc_a"].EventID == byAccount["acc_b"].EventID {
		t.Fatalf("both emissions have id %s", byAccount["acc_a"].EventID)
	}
}

// A profile written under the earlier key (the resource id alone) is read
// as its account's, and the next transaction writes it under its state key
// and deletes the old record.
func TestProfilesMigrateStateWrittenBeforeAccounts(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := profileStage(t, func() time.Time { return now })
	pp := newProfilePart()
	p.load(pp, &kgo.Record{Key: []byte(profileKeyPrefix + "prof_1"), Value: []byte(`{"a":"acc_a","p":{"visits":3},"s":4,"t":` + jsonInt(now.UnixMilli()) + `}`)})
	p.parts.put(0, pp)
	if _, err := p.Apply(&kgo.Record{}, change("prof_1", 3, `{"visits":9}`)); err == nil {
		// change() is acc_1's: a profile of its own, not acc_a's.
		if len(pp.profiles) != 2 {
			t.Fatalf("%d profiles, want acc_a's and acc_1's", len(pp.profiles))
		}
	}
	out := p.Records(0, nil)
	keys := map[string]bool{}
	for _, r := range out {
		keys[string(r.Key)+map[bool]string{true: " (tombstone)", false: ""}[r.Value == nil]] = true
	}
	for _, want := range []string{profileKeyPrefix + "prof_1 (tombstone)", profileKeyPrefix + string(appendStateKey(nil, "acc_a", "prof_1")), profileKeyPrefix + string(appendStateKey(nil, "acc_1", "prof_1"))} {
		if !keys[want] {
			t.Fatalf("state records %v, want %q", keys, want)
		}
	}
	if again := p.Records(0, nil); len(again) != 0 {
		t.Fatalf("a second Records call in the transaction wrote %d records again", len(again))
	}
	p.End(false) // an abort: the next transaction migrates again
	if again := p.Records(0, nil); len(again) == 0 {
		t.Fatal("an aborted migration was not written again")
	}
	p.End(true)
	if out := p.Records(0, nil); len(out) != 0 {
		t.Fatalf("the migration was written again: %v", out)
	}
}

// A change that would take a profile past max_bytes or max_properties is
// refused as oversize (and so dead-lettered); changing properties a full
// profile has is not.
func TestProfileBounds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := ProfilesConfig{EventTypes: []string{"profile.*"}, PropertiesField: "properties", CoalesceInterval: time.Minute,
		RestInterval: time.Minute, TTL: time.Hour, MaxBytes: 1024, MaxProperties: 3}
	p, err := NewProfiles(cfg, "firehose.state", func() time.Time { return now }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.parts.put(0, newProfilePart())
	apply := func(seq int64, props string) error {
		_, err := p.Apply(&kgo.Record{}, change("prof_1", seq, props))
		return err
	}
	if err := apply(1, `{"a":1,"b":2,"c":3}`); err != nil {
		t.Fatal(err)
	}
	p.Tick(0, now.Add(2*time.Minute), true, false) // into the snapshot
	p.End(true)
	if err := apply(2, `{"a":5,"c":6}`); err != nil {
		t.Fatalf("changing properties of a full profile: %v", err)
	}
	if err := apply(3, `{"d":4}`); schemas.ClassOf(err) != schemas.ClassOversize || !strings.Contains(err.Error(), "max_properties (3)") {
		t.Fatalf("a fourth property: %v", err)
	}
	if err := apply(4, `{"a":"`+strings.Repeat("x", 1100)+`"}`); schemas.ClassOf(err) != schemas.ClassOversize || !strings.Contains(err.Error(), "max_bytes (1024)") {
		t.Fatalf("a value past max_bytes: %v", err)
	}
}

// A state key gives back the account and resource it was made of, so no
// two pairs share one, whatever bytes the ids hold.
func FuzzStateKey(f *testing.F) {
	f.Add("acc_a", "lead_1")
	f.Add("a\x00b", "c")
	f.Add("", "\xfe")
	f.Fuzz(func(t *testing.T, account, resource string) {
		a, r, ok := splitStateKey(string(appendStateKey(nil, account, resource)))
		if !ok || a != account || r != resource {
			t.Fatalf("(%q, %q) came back as (%q, %q, %v)", account, resource, a, r, ok)
		}
	})
}
