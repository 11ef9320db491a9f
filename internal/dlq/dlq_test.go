package dlq

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func size(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Fit leaves a dead letter that fits alone, and cuts the value (then the
// key) of one that does not, so that it always fits with room for the
// record's framing.
func TestFitAlwaysFits(t *testing.T) {
	const limit = 64 << 10
	src := &kgo.Record{Topic: "raw", Key: []byte("lead_1"), Value: []byte(`{"a":1}`)}
	small := Record("dlq", src, Reason{Stage: "processor", Class: "invalid", Message: "m"}, time.Now())
	if Fit(small, limit) != small {
		t.Fatal("a small dead letter was changed")
	}
	for _, tt := range []struct{ key, value int }{{10, limit - 200}, {10, limit}, {10, 10 * limit}, {limit, limit}, {2 * limit, 10}} {
		t.Run(fmt.Sprintf("key %d value %d", tt.key, tt.value), func(t *testing.T) {
			src := &kgo.Record{Topic: "raw", Key: bytes.Repeat([]byte("k"), tt.key), Value: bytes.Repeat([]byte("v"), tt.value)}
			r := Fit(Record("dlq", src, Reason{Stage: "processor", Class: "oversize", Message: "m"}, time.Now()), limit)
			if size(r)+RecordOverhead > limit {
				t.Errorf("key %d, value %d: dead letter of %d bytes does not fit %d", tt.key, tt.value, size(r), limit)
			}
			if Header(r, HeaderValueSize) != strconv.Itoa(tt.value) || len(Header(r, HeaderValueSHA256)) != 64 {
				t.Errorf("key %d, value %d: headers %v", tt.key, tt.value, r.Headers)
			}
			if !bytes.HasPrefix(src.Value, r.Value) || !bytes.HasPrefix(src.Key, r.Key) {
				t.Errorf("key %d, value %d: not a prefix of the original", tt.key, tt.value)
			}
		})
	}
}

// A record whose own headers are megabytes (700,000 empty ones, say) still
// makes a dead letter that fits: its headers are left out and counted,
// and the reason headers stay.
func TestFitDropsAFloodOfHeaders(t *testing.T) {
	const limit = 1 << 20
	src := &kgo.Record{Topic: "raw", Key: []byte("lead_1"), Value: []byte(`{"a":1}`), Headers: make([]kgo.RecordHeader, 700_000)}
	for i := range src.Headers {
		src.Headers[i].Key = "h"
	}
	r := Fit(Record("dlq", src, Reason{Stage: "processor", Class: "invalid", Message: "m"}, time.Now()), limit)
	if size(r)+6*len(r.Headers)+RecordOverhead > limit {
		t.Fatalf("a dead letter of %d bytes in %d headers does not fit %d", size(r), len(r.Headers), limit)
	}
	if Header(r, HeaderHeadersDropped) != "700000" || Header(r, HeaderClass) != "invalid" || string(r.Value) != `{"a":1}` {
		t.Fatalf("headers %v, value %q", r.Headers, r.Value)
	}
}
