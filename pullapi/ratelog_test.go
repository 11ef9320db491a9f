package pullapi

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of failures writes one line per interval, then says how many it
// left out.
func TestFailureLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := rateLimitedLog{log: slog.New(slog.NewTextHandler(&buf, nil)), every: time.Hour}
	for range 1000 {
		l.Warn("pull API request failed", "err", "boom")
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for 1000 failures", n)
	}
	l.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	l.Warn("pull API request failed", "err", "boom")
	if !strings.Contains(buf.String(), "similar_lines_suppressed=999") {
		t.Fatalf("log:\n%s", buf.String())
	}
}
