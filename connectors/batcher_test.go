package connectors

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// rec returns the record at offset off of partition 0, keyed by key, with
// a value of size bytes, and its event.
func rec(off int64, key string, size int) (*kgo.Record, *schemas.Event) {
	r := &kgo.Record{Topic: "events", Partition: 0, Offset: off, Key: []byte(key), Value: make([]byte, size)}
	return r, &schemas.Event{EventID: fmt.Sprint(off), ResourceID: key, Timestamp: time.Unix(0, 0)}
}

func testBatcher(ordered bool, bounds Bounds, limit int64) *batcher {
	return &batcher{name: "c", bounds: bounds, limit: limit, ordered: ordered, ext: ".ndjson"}
}

func TestBatcherBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name      string
		bounds    Bounds
		adds      int // records of 100 bytes (196 counted), one key
		age       time.Duration
		sealed    []int // events per sealed batch
		stillOpen int
	}{
		{"count", Bounds{MaxEvents: 3, MaxBytes: 1 << 20, MaxAge: time.Hour}, 7, 0, []int{3, 3}, 1},
		{"bytes", Bounds{MaxEvents: 100, MaxBytes: 500, MaxAge: time.Hour}, 7, 0, []int{3, 3}, 1},
		{"age not reached", Bounds{MaxEvents: 100, MaxBytes: 1 << 20, MaxAge: time.Minute}, 5, 59 * time.Second, nil, 5},
		{"age reached", Bounds{MaxEvents: 100, MaxBytes: 1 << 20, MaxAge: time.Minute}, 5, time.Minute, []int{5}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bt := testBatcher(false, tc.bounds, 0)
			ps := newPartState()
			for i := range tc.adds {
				r, e := rec(int64(i), "k", 100)
				bt.add(ps, r, e, nil, t0)
			}
			bt.sealAged(ps, t0.Add(tc.age))
			var got []int
			for _, b := range ps.sealed {
				got = append(got, len(b.Events))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.sealed) {
				t.Fatalf("sealed %v, want %v", got, tc.sealed)
			}
			open := 0
			for _, b := range ps.open {
				open += len(b.records)
			}
			// Each record holds its 100 bytes, its key, 96 for its
			// metadata and recordBytes.
			per := 196 + 1 + recordBytes
			if open != tc.stillOpen || bt.buffered != int64(open*per) || bt.pending != int64((tc.adds-open)*per) {
				t.Fatalf("open %d (want %d), buffered %d, pending %d", open, tc.stillOpen, bt.buffered, bt.pending)
			}
		})
	}
}

// An ordered destination's batches hold one lane each: a key's records are
// always in one lane, and different lanes are different batches. An
// object store's are not split.
func TestBatcherLanes(t *testing.T) {
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, ordered := range []bool{true, false} {
		bt := testBatcher(ordered, Bounds{MaxEvents: 1000, MaxBytes: 1 << 20, MaxAge: time.Hour}, 0)
		ps := newPartState()
		for i := range 100 {
			r, e := rec(int64(i), keys[i%len(keys)], 10)
			bt.add(ps, r, e, nil, time.Unix(0, 0))
		}
		bt.sealAll(ps)
		lanes := map[string]int{}
		for _, b := range ps.sealed {
			for _, r := range b.Records {
				if l, ok := lanes[string(r.Key)]; ok && l != b.lane {
					t.Fatalf("key %s in lanes %d and %d", r.Key, l, b.lane)
				}
				lanes[string(r.Key)] = b.lane
				if ordered && Lane(r.Key) != b.lane {
					t.Fatalf("key %s in lane %d, Lane says %d", r.Key, b.lane, Lane(r.Key))
				}
			}
		}
		want := 1
		if ordered {
			distinct := map[int]bool{}
			for _, k := range keys {
				distinct[Lane([]byte(k))] = true
			}
			want = len(distinct)
		}
		if len(ps.sealed) != want {
			t.Fatalf("ordered %v: %d batches, want %d", ordered, len(ps.sealed), want)
		}
		for i := 1; i < len(ps.sealed); i++ {
			if ps.sealed[i-1].FirstOffset > ps.sealed[i].FirstOffset {
				t.Fatal("the queue is not in offset order")
			}
		}
	}
}

// Over the cap, the largest open batches are sealed down to half of it.
func TestBatcherCap(t *testing.T) {
	per := 104 + 96 + 1 + recordBytes // a record's value, metadata, key and the rest
	bt := testBatcher(false, Bounds{MaxEvents: 1000, MaxBytes: 1 << 20, MaxAge: time.Hour}, int64(10*per))
	parts := map[tp]*partState{{"events", 0}: newPartState(), {"events", 1}: newPartState()}
	for i := range 8 {
		r, e := rec(int64(i), "k", 104)
		bt.add(parts[tp{"events", 0}], r, e, nil, time.Unix(0, 0))
	}
	for i := range 4 {
		r, e := rec(int64(i), "k", 104)
		r.Partition = 1
		bt.add(parts[tp{"events", 1}], r, e, nil, time.Unix(0, 0))
	}
	bt.sealOverCap(parts) // 12 records' bytes open, over 10
	if len(parts[tp{"events", 0}].sealed) != 1 || len(parts[tp{"events", 1}].sealed) != 0 || bt.buffered != int64(4*per) || bt.pending != int64(8*per) {
		t.Fatalf("sealed %d and %d; buffered %d, pending %d: want the largest sealed, 4 records left open",
			len(parts[tp{"events", 0}].sealed), len(parts[tp{"events", 1}].sealed), bt.buffered, bt.pending)
	}
	bt.sealOverCap(parts) // under the cap: nothing
	if len(parts[tp{"events", 1}].sealed) != 0 {
		t.Fatal("sealed under the cap")
	}
}

// The commit point stops at the first undelivered batch, whatever was
// delivered after it; revoking a partition gives its bytes back.
func TestCommitPointWithHoles(t *testing.T) {
	bt := testBatcher(false, Bounds{MaxEvents: 10, MaxBytes: 1 << 20, MaxAge: time.Hour}, 0)
	ps := newPartState()
	for i := range 35 {
		r, e := rec(int64(i), "k", 4)
		bt.add(ps, r, e, nil, time.Unix(0, 0))
		ps.next = int64(i) + 1
	}
	b0, b1, b2 := ps.sealed[0], ps.sealed[1], ps.sealed[2]
	steps := []struct {
		delivered *Batch
		want      int64
	}{
		{nil, 0},
		{b1, 0},  // a hole: 10-19 delivered, 0-9 not
		{b0, 20}, // 0-19 delivered
		{b2, 30}, // 30-34 still open
	}
	for _, s := range steps {
		if s.delivered != nil {
			bt.delivered(ps, s.delivered)
		}
		if got := ps.commitPoint(); got != s.want {
			t.Fatalf("after %v: commit point %d, want %d", s.delivered, got, s.want)
		}
	}
	bt.sealAll(ps)
	bt.delivered(ps, ps.sealed[0])
	if got := ps.commitPoint(); got != 35 {
		t.Fatalf("everything delivered: commit point %d, want the next offset 35", got)
	}
	r, e := rec(35, "k", 4)
	bt.add(ps, r, e, nil, time.Unix(0, 0))
	r, e = rec(36, "k", 4)
	bt.add(ps, r, e, nil, time.Unix(0, 0))
	bt.sealAll(ps)
	inFlight := ps.sealed[0]
	bt.forget(ps)
	if bt.buffered != 0 || bt.pending != 0 {
		t.Fatalf("after a revoke: buffered %d, pending %d", bt.buffered, bt.pending)
	}
	// A delivery that ends after its partition was lost counts nothing
	// twice.
	bt.delivered(ps, inFlight)
	if bt.pending != 0 {
		t.Fatalf("a late delivery made pending %d", bt.pending)
	}
}

// A delivered batch's records let go of their bytes: the slab they were
// handed out from outlives them (its other records may be in open
// batches), and must not keep megabytes of delivered values with it.
func TestDeliveredRecordsLetGoOfTheirBytes(t *testing.T) {
	bt := testBatcher(false, Bounds{MaxEvents: 10, MaxBytes: 1 << 30, MaxAge: time.Hour}, 0)
	ps := newPartState()
	var owned []*kgo.Record
	for i := range 15 {
		r, e := rec(int64(i), "k", 4)
		r.Value = bytes.Repeat([]byte("v"), 100<<10) // larger than a chunk's room: memory of its own
		r = ps.own(r)
		owned = append(owned, r)
		bt.add(ps, r, e, nil, time.Unix(0, 0))
		ps.next = int64(i) + 1
	}
	bt.delivered(ps, ps.sealed[0])
	for i, r := range owned {
		if delivered := i < 10; delivered != (r.Value == nil) {
			t.Fatalf("record %d (delivered %v) holds %d bytes", i, delivered, len(r.Value))
		}
	}
}

// A restarted batcher follows the recorded cuts: a path's records inside a
// cut that starts at or after the committed offset make exactly that
// batch, whatever the bounds; those inside a cut that starts before it
// were delivered and are dropped; past the cuts, batches are cut as they
// come. Cuts round-trip through the commit metadata.
func TestBatcherFollowsRecordedCuts(t *testing.T) {
	tmpl, err := ParseTemplate("{{resource_id}}/")
	if err != nil {
		t.Fatal(err)
	}
	bt := &batcher{name: "c", bounds: Bounds{MaxEvents: 2, MaxBytes: 1 << 20, MaxAge: time.Hour}, ext: ".ndjson", tmpl: tmpl, recordCuts: true}
	// Before the crash: a/ 0-4 delivered (it started before the commit
	// at 3), b/ 3-7 and a/ 5-9 recorded. Offsets alternate a b a b …
	// from 3 on.
	meta, n := appendCuts([]byte(CommitMetadataPrefix+"x"), 3, []cut{
		{pathHash("a/"), 0, 4}, {pathHash("b/"), 3, 7}, {pathHash("a/"), 5, 9},
	}, 0)
	if n != 3 {
		t.Fatalf("%d cuts fit", n)
	}
	cuts, err := parseCuts(string(meta), 3)
	if err != nil {
		t.Fatal(err)
	}
	ps := newPartState()
	ps.plan, ps.planBase, ps.planEnd = cuts, 3, 9
	slices.SortFunc(ps.plan, func(a, b cut) int { return cmp.Compare(a.first, b.first) })
	for off := int64(3); off < 14; off++ {
		key := "b"
		if off%2 == 0 {
			key = "a"
		}
		if off == 4 {
			key = "a" // a/'s last record of the delivered cut
		}
		r, e := rec(off, key, 10)
		bt.add(ps, r, e, nil, time.Unix(0, 0))
		ps.next = off + 1
	}
	bt.sealAll(ps)
	var got []string
	for _, b := range ps.sealed {
		got = append(got, fmt.Sprintf("%s%d-%d:%d", b.Key[:2], b.FirstOffset, b.LastOffset, len(b.Records)))
	}
	// b/ 3-7 holds 3, 5 and 7, sealed at its last offset though the
	// bounds say 2; a/ 4 is dropped (in its delivered object). a/'s cut
	// 5-9 gets 6 and 8 but not its last offset, 9 (b's here, as if a
	// filter had changed): once the stream passes the cuts it is sealed
	// as it stands. From 9 on, batches of 2 as the bounds say.
	want := "[b/3-7:3 a/6-8:2 b/9-11:2 a/10-12:2 b/13-13:1]"
	if fmt.Sprint(got) != want {
		t.Fatalf("batches %v, want %s", got, want)
	}
}

// A commit's cuts stay within MaxCutBytes, and those not reserved (not
// recorded yet, and not the oldest waiting) leave CutReserve of it free,
// so the batch holding the commit point always finds room.
func TestCutsLeaveRoomForTheOldest(t *testing.T) {
	var cuts []cut
	for i := range int64(300) {
		cuts = append(cuts, cut{path: pathHash(fmt.Sprint(i)), first: 1000 + i*50, last: 1000 + i*50 + 49})
	}
	free, nFree := appendCuts(nil, 1000, cuts, 0)
	all, nAll := appendCuts(nil, 1000, cuts, len(cuts))
	if len(free) > MaxCutBytes-CutReserve || len(all) > MaxCutBytes || nAll <= nFree || nFree == 0 {
		t.Fatalf("unreserved: %d cuts in %d bytes; reserved: %d in %d", nFree, len(free), nAll, len(all))
	}
	back, err := parseCuts(string(all), 1000)
	if err != nil || fmt.Sprint(back) != fmt.Sprint(cuts[:nAll]) {
		t.Fatalf("round trip: %v", err)
	}
}
