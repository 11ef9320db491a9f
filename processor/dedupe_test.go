package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// The dedupe state keeps copies of the resource ids it tracks, never the
// records' memory: decoded events share their record's fetch buffer, which
// the client reuses (kafkaclient.Pools) once the transaction has ended, and
// which would otherwise stay pinned for as long as the id is tracked.
func TestDedupeStateOwnsItsKeys(t *testing.T) {
	d := NewDeduper("firehose.state", "events.dlq", time.Hour, nil, time.Now, nil)
	d.parts.put(0, newDedupePart(time.Now()))
	fetch := make([]byte, 512) // one buffer, reused as a pooling client reuses it
	for seq := 1; seq <= 3; seq++ {
		n := copy(fetch, fmt.Sprintf(`{"event_id":"e%d","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"lead_1","sequence":%d,"event_type":"lead.created"}`, seq, seq))
		rec := &kgo.Record{Partition: 0, Key: fetch[:0], Value: fetch[:n]}
		e, err := schemas.JSON{Borrow: true}.Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if keep, err := d.Apply(rec, e); !keep || err != nil {
			t.Fatalf("sequence %d: keep %v, %v", seq, keep, err)
		}
	}
	for i := range fetch {
		fetch[i] = 'x'
	}
	d.End(true)
	dp := d.parts.get(0)
	if got, ok := dp.seen[string(appendStateKey(nil, "a", "lead_1"))]; !ok || got.seq != 3 || len(dp.seen) != 1 {
		t.Fatalf("state after the buffer was reused: %v", dp.seen)
	}
}
