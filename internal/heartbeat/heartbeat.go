// Package heartbeat tells a loop that comes round from one that is stuck:
// each processing loop beats once per round, and the process's /healthz
// fails when one has not beaten for too long, so that an orchestrator
// restarts a wedged worker instead of keeping it alive.
package heartbeat

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Beat is one loop's heartbeat. The zero value has not beaten yet.
type Beat struct {
	Name string
	last atomic.Int64 // unix nanos
}

// New returns a beat that counts as having beaten now.
func New(name string) *Beat {
	b := &Beat{Name: name}
	b.Beat()
	return b
}

// Beat records a round of the loop. It is safe to call on nil.
func (b *Beat) Beat() {
	if b != nil {
		b.last.Store(time.Now().UnixNano())
	}
}

// Since returns how long ago the loop last beat.
func (b *Beat) Since(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, b.last.Load()))
}

// Check returns an error naming the first beat older than stall.
func Check(beats []*Beat, stall time.Duration, now time.Time) error {
	for _, b := range beats {
		if d := b.Since(now); d > stall {
			return fmt.Errorf("%s has not come round its loop for %s (longer than api.stall_timeout, %s): a call that does not return, or a deadlock", b.Name, d.Round(time.Second), stall)
		}
	}
	return nil
}
