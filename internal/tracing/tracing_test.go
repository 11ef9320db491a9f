package tracing

import (
	"bytes"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// What passes as trace context can travel as an HTTP header value as it
// is (no CR, LF or other control byte), within its bounds; a W3C
// traceparent passes.
func FuzzTraceContext(f *testing.F) {
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1"))
	f.Add([]byte("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"))
	f.Add([]byte("vendor=a,other=b"))
	f.Fuzz(func(t *testing.T, v []byte) {
		if ValidTraceparent(v) {
			if len(v) < 55 || len(v) > 512 || !httpguts.ValidHeaderFieldValue(string(v)) || bytes.ContainsAny(v, "\r\n") {
				t.Fatalf("traceparent %q passed", v)
			}
		}
		if ValidTracestate(v) {
			if len(v) > MaxTracestate || !httpguts.ValidHeaderFieldValue(string(v)) {
				t.Fatalf("tracestate %q passed", v)
			}
		}
	})
}

func TestTraceparent(t *testing.T) {
	for v, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x":     false, // version 00 has no more fields
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x":     true,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":       false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":       false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":       false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX:": false,
		"tp-e1": false,
	} {
		t.Run(v, func(t *testing.T) {
			if got := ValidTraceparent([]byte(v)); got != want {
				t.Errorf("%q: %v, want %v", v, got, want)
			}
		})
	}
}
