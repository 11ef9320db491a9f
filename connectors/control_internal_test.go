package connectors

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// simulate runs rounds of a window against a destination that takes
// capacity(round) requests at once and refuses the rest with a 429, each
// answer taking rtt(round); it returns the limit after each round and
// the share of requests refused.
func simulate(t *testing.T, rounds int, capacity func(int) int, rtt func(int) time.Duration) ([]int, float64) {
	t.Helper()
	w := newWindow(32, nil)
	var limits []int
	sent, refused := 0, 0
	for r := range rounds {
		var full []uint64
		for w.inUse < int(w.limit) {
			n, err := w.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			full = append(full, n)
		}
		if len(full) > w.max {
			t.Fatalf("round %d: %d in flight over the max %d", r, len(full), w.max)
		}
		// Refusals come back at once, answers after the round trip.
		c := min(capacity(r), len(full))
		for _, f := range full[c:] {
			refused++
			w.release(f, time.Millisecond, signalBackoff)
		}
		d := rtt(r)
		for _, f := range full[:c] {
			w.release(f, d, signalOK)
		}
		sent += len(full)
		limits = append(limits, int(w.limit))
	}
	return limits, float64(refused) / float64(sent)
}

func TestWindowFindsAndFollowsTheDestinationsLimit(t *testing.T) {
	steady := func(int) time.Duration { return 50 * time.Millisecond }
	limits, refused := simulate(t, 200, func(int) int { return 6 }, steady)
	for r, l := range limits[10:] {
		if l < 6 || l > 7 {
			t.Fatalf("round %d: limit %d against a destination that takes 6: %v", r+10, l, limits)
		}
	}
	if refused > 0.10 {
		t.Fatalf("%.1f%% of requests refused", 100*refused)
	}

	limits, _ = simulate(t, 60, func(r int) int { return map[bool]int{true: 20, false: 2}[r < 30] }, steady)
	if limits[29] < 18 || limits[33] > 3 {
		t.Fatalf("limits %v: a drop from 20 to 2 must be followed within 3 round trips", limits)
	}

	limits, _ = simulate(t, 20, func(int) int { return 1000 }, steady)
	if limits[10] != 32 {
		t.Fatalf("limits %v: a destination without a limit must get the max", limits)
	}

	limits, _ = simulate(t, 60, func(int) int { return 1000 }, func(r int) time.Duration {
		return map[bool]time.Duration{true: 50 * time.Millisecond, false: 200 * time.Millisecond}[r < 30]
	})
	if limits[29] != 32 || limits[31] >= 32 {
		t.Fatalf("limits %v: answers four times slower must narrow the window", limits)
	}
}

// The first rule that matches decides; unmatched errors keep the
// defaults; a record not written, or a cancelled request, is always
// tried again whatever the rules say.
func TestErrorRulesDecide(t *testing.T) {
	c := Config{OnPermanentError: "stop", OnError: []ErrorRule{
		{Status: Strings{"404", "410"}, Action: ActionDrop},
		{Status: Strings{"4xx"}, Class: Strings{ClassAuth}, Action: ActionRetry},
		{Code: Strings{"MESSAGE_TOO_LARGE"}, Action: ActionDLQ},
		{Class: Strings{ClassRetryable}, Action: ActionDLQ},
	}}
	rs := compileErrorRules(c)
	status := func(st int, permanent bool) error {
		if permanent {
			return Describe(Permanent(errors.New("x"), ""), st, "", "")
		}
		return Describe(Retryable(errors.New("x"), 0), st, "", "")
	}
	for _, tc := range []struct {
		name   string
		err    error
		action string
		rule   string
	}{
		{"410", status(410, true), ActionDrop, "status=404,410"},
		{"403", status(403, true), ActionRetry, "status=4xx class=auth"},
		{"400 unmatched, permanent", status(400, true), ActionStop, ""},
		{"code", Describe(Permanent(errors.New("x"), ""), 0, "MESSAGE_TOO_LARGE", ClassTooLarge), ActionDLQ, "code=MESSAGE_TOO_LARGE"},
		{"retryable", status(503, false), ActionDLQ, "class=retryable"},
		{"not written", ErrNotWritten, ActionRetry, ""},
		{"cancelled", fmt.Errorf("write: %w", context.Canceled), ActionRetry, ""},
	} {
		if d := rs.decide(tc.err); d.action != tc.action || d.rule != tc.rule {
			t.Errorf("%s: %+v, want %s by %q", tc.name, d, tc.action, tc.rule)
		}
	}
}
