package iceberg

import (
	"strings"
	"testing"

	"github.com/firehose/firehose/connectors"
)

// A summary property reads back as the ranges written; any other text
// never panics, and what it accepts is well formed.
func FuzzParseOffsets(f *testing.F) {
	f.Add("lake", "events", int32(3), int64(0), int64(99), "firehose.lake.offsets.events.3", "0-99,100-120")
	f.Add("lake-replay-ab12", "a.b.c", int32(0), int64(5), int64(5), "firehose.x.offsets.t.-1", "1-0")
	f.Add("c", "t", int32(7), int64(1<<40), int64(1<<41), "firehose..offsets.t.1", "")
	f.Fuzz(func(t *testing.T, conn, topic string, part int32, first, last int64, key, value string) {
		if conn != "" && topic != "" && !strings.Contains(conn, ".offsets.") && !strings.Contains(conn, ".") && part >= 0 && first >= 0 && last >= first {
			e := &entry{r: rng{conn, topic, part, first, last}}
			for k, v := range summary([]*entry{e}) {
				c, tp, p, ranges, ok := ParseOffsets(k, v)
				if !ok || c != conn || tp != topic || p != part || len(ranges) != 1 || ranges[0] != [2]int64{first, last} {
					t.Fatalf("%s=%s read back as %q %q %d %v %v", k, v, c, tp, p, ranges, ok)
				}
			}
		}
		c, tp, p, ranges, ok := ParseOffsets(key, value)
		if !ok {
			return
		}
		if c == "" || tp == "" || p < 0 || len(ranges) == 0 {
			t.Fatalf("accepted %q=%q as %q %q %d %v", key, value, c, tp, p, ranges)
		}
		for _, r := range ranges {
			if r[0] < 0 || r[1] < r[0] {
				t.Fatalf("accepted range %v", r)
			}
		}
	})
}

// partition_by never panics, and what it accepts makes a path template
// the runtime parses.
func FuzzParsePartitions(f *testing.F) {
	f.Add("day(timestamp)", "event_type")
	f.Add("hour( timestamp )", "identity(account_id)")
	f.Add("bucket(resource_id)", "truncate(x)")
	f.Fuzz(func(t *testing.T, a, b string) {
		parts, err := ParsePartitions([]string{a, b})
		if err != nil {
			return
		}
		if _, err := connectors.ParseTemplate(pathTemplate(parts)); err != nil {
			t.Fatalf("%q, %q: template %q: %v", a, b, pathTemplate(parts), err)
		}
	})
}
