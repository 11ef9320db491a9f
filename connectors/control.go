// Delivery control: a connector's rate limits and its adaptive window of
// requests in flight.

package connectors

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/time/rate"

	"github.com/firehose/firehose/internal/yamlconf"
)

// RateLimit bounds what one process sends to a connector's destination,
// every attempt counted, retries included. Zero is no limit. Each limit is
// a token bucket holding a fifth of a second's worth: over any span of T
// seconds a process sends at most rate × T, plus that fifth, plus one
// request (a batch larger than a fifth of a second's worth waits until its
// whole allowance has accrued and then goes at once). The limits are per
// process: with N replicas, divide the destination's contract by N.
type RateLimit struct {
	EventsPerSecond   float64           `yaml:"events_per_second"`
	RequestsPerSecond float64           `yaml:"requests_per_second"`
	BytesPerSecond    yamlconf.ByteSize `yaml:"bytes_per_second"` // e.g. 10MB; the bytes sent: compressed bodies, or records' values
}

// IsZero reports whether no limit is set.
func (r RateLimit) IsZero() bool { return r == RateLimit{} }

// limiter keeps a connector's RateLimit; nil keeps none.
type limiter struct {
	events, requests, bytes *rate.Limiter
}

func newLimiter(r RateLimit) *limiter {
	if r.IsZero() {
		return nil
	}
	bucket := func(perSecond float64) *rate.Limiter {
		if perSecond <= 0 {
			return nil
		}
		burst := max(1, int(math.Ceil(perSecond/5)))
		return rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return &limiter{events: bucket(r.EventsPerSecond), requests: bucket(r.RequestsPerSecond), bytes: bucket(float64(r.BytesPerSecond))}
}

// wait blocks until one request of events and bytes may go, or ctx ends.
func (l *limiter) wait(ctx context.Context, events, bytes int) error {
	if l == nil {
		return nil
	}
	if err := take(ctx, l.requests, 1); err != nil {
		return err
	}
	if err := take(ctx, l.events, events); err != nil {
		return err
	}
	return take(ctx, l.bytes, bytes)
}

// chunk is the most events one write of a record destination carries, so
// that it fits one bucket of the events limit (0: no bound).
func (l *limiter) chunk() int {
	if l == nil || l.events == nil {
		return 0
	}
	return l.events.Burst()
}

// take waits for n tokens of lim, a bucket at a time.
func take(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	for n > 0 {
		k := min(n, lim.Burst())
		if err := lim.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		n -= k
	}
	return nil
}

// InFlight is max_in_flight: a number of batches, or InFlightAuto.
type InFlight int

// InFlightAuto is max_in_flight: auto.
const InFlightAuto InFlight = -1

// UnmarshalYAML accepts a number or auto.
func (f *InFlight) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "auto" {
		*f = InFlightAuto
		return nil
	}
	var i int
	if err := n.Decode(&i); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a number of batches or auto, got %q", n.Line, n.Value)}}
	}
	*f = InFlight(i)
	return nil
}

// MarshalYAML writes auto or the number.
func (f InFlight) MarshalYAML() (any, error) {
	if f == InFlightAuto {
		return "auto", nil
	}
	return int(f), nil
}

// window is max_in_flight: auto, an adaptive bound on a connector's
// requests in flight (additive increase, multiplicative decrease, after
// Vector's adaptive request concurrency and TCP's congestion control). It
// starts at 1.
//
//   - A refusal that asks to slow down (throttled: 429, SlowDown…), a
//     timeout or a 503 narrows it to the requests still in flight beside
//     the refused one, and each refusal of those by one more, never below
//     half the limit they were sent under: a destination that takes 6 at
//     once and refused the 7th is given 6, one that dropped from 20 to 2
//     is followed in three round trips.
//   - An answer twice as slow as usual narrows it to 9/10.
//   - An answer that came while the window was full and no slower than
//     usual widens it: before the first narrowing by 1 (doubling every
//     round trip), below the limit last narrowed to by 1/limit (one per
//     round trip), and above it by a quarter of that, so that the limit
//     where the destination pushed back is probed again only every four
//     round trips.
//
// Answers to requests sent before a narrowing do not move the limit
// again, except refusals as said. It never leaves [1, max].
type window struct {
	mu    sync.Mutex
	limit float64
	max   int
	inUse int
	wake  chan struct{} // closed when a slot is released
	srtt  float64       // smoothed round trip of answers, seconds
	// answers counts answers, for the smoothing to settle.
	answers int
	// Requests are numbered as they start (next). A narrowing begins an
	// episode: a request numbered below episode started under an older
	// limit. reached is the last request that filled the window.
	next, episode, reached uint64
	// ceiling is the limit after the last narrowing (0 before one);
	// floor the least the current episode's refusals narrow it to.
	ceiling, floor float64
	onSet          func(int) // told the limit when it changes
}

func newWindow(maxInFlight int, onSet func(int)) *window {
	w := &window{limit: 1, max: maxInFlight, wake: make(chan struct{}), onSet: onSet}
	if onSet != nil {
		onSet(1)
	}
	return w
}

// acquire takes a slot, waiting while the window is full, and returns the
// request's number, for release.
func (w *window) acquire(ctx context.Context) (uint64, error) {
	for {
		w.mu.Lock()
		if w.inUse < int(w.limit) {
			w.inUse++
			n := w.next
			w.next++
			if w.inUse >= int(w.limit) {
				w.reached = n
			}
			w.mu.Unlock()
			return n, nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Signals a request's end gives the window.
const (
	signalOK      = iota // an answer, accepted or refused for its content
	signalBackoff        // the destination asked to slow down, or did not answer in time
	signalNeutral        // says nothing of the destination's load (a connection refused, a cancelled request)
)

// release returns request n's slot, with its round trip and signal.
func (w *window) release(n uint64, rtt time.Duration, signal int) {
	w.mu.Lock()
	w.inUse--
	close(w.wake)
	w.wake = make(chan struct{})
	before := int(w.limit)
	old := n < w.episode // it started under a limit since narrowed
	switch signal {
	case signalBackoff:
		if !old {
			// The requests still in flight are what the destination
			// took beside this one.
			w.floor = max(1, w.limit/2)
			w.limit = max(w.floor, min(w.limit, float64(w.inUse)))
			w.episode, w.ceiling = w.next, w.limit
		} else {
			// Each further refusal of those in flight then takes one more.
			w.limit = max(w.floor, w.limit-1)
			w.ceiling = w.limit
		}
	case signalOK:
		s := rtt.Seconds()
		slow := w.answers >= 8 && s > 2*w.srtt
		if w.answers == 0 {
			w.srtt = s
		} else {
			w.srtt += (s - w.srtt) / 8
		}
		w.answers++
		full := w.reached >= n // the window filled while it was in flight
		switch {
		case old:
		case slow:
			w.limit = max(1, w.limit*0.9)
			w.episode, w.ceiling = w.next, w.limit
		case !full:
		case w.ceiling == 0:
			w.limit = min(float64(w.max), w.limit+1)
		case w.limit < w.ceiling:
			w.limit = min(float64(w.max), w.limit+1/w.limit)
		default:
			w.limit = min(float64(w.max), w.limit+1/(4*w.limit))
		}
	}
	after := int(w.limit)
	w.mu.Unlock()
	if after != before && w.onSet != nil {
		w.onSet(after)
	}
}

// signalOf is the signal a delivery's outcome gives the window.
func signalOf(err error) int {
	if err == nil {
		return signalOK
	}
	f := FailureOf(err)
	switch {
	case f.Class == ClassThrottled, f.Class == ClassTimeout, f.Status == 503:
		return signalBackoff
	case f.Status != 0:
		return signalOK
	}
	return signalNeutral
}
