package heartbeat

import (
	"strings"
	"testing"
	"time"
)

func TestCheckNamesTheStuckLoop(t *testing.T) {
	a, b := New("the processor"), New("connector lake")
	now := time.Now()
	if err := Check([]*Beat{a, b}, time.Minute, now.Add(30*time.Second)); err != nil {
		t.Fatalf("within the stall timeout: %v", err)
	}
	a.last.Store(now.Add(-5 * time.Minute).UnixNano())
	err := Check([]*Beat{b, a}, time.Minute, now)
	if err == nil || !strings.HasPrefix(err.Error(), "the processor has not come round its loop for 5m0s") {
		t.Fatalf("a loop stuck for 5m: %v", err)
	}
	var none *Beat
	none.Beat() // a component without a beat
}
