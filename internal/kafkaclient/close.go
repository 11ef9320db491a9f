package kafkaclient

import (
	"context"
	"log/slog"
	"time"
)

// CloseWithin runs closeFn (a franz-go client's or session's Close) and
// waits for it until ctx ends. Close leaves the consumer group, and during a
// rebalance franz-go waits for the rebalance to finish first: up to the
// group's rebalance timeout, a minute by default. A stop must not wait that
// long, so past ctx the close goes on in the background and CloseWithin
// returns; the broker expires the member after its session timeout, and the
// process is about to exit anyway.
func CloseWithin(ctx context.Context, closeFn func(), log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("leaving the consumer group did not finish within the shutdown timeout; stopping anyway (the broker expires this member after its session timeout)")
	}
}

// DefaultShutdownTimeout is how long a stop may take by default, for the
// processor and every connector: finishing the transaction or flushing open
// batches, committing, and leaving the group (run --shutdown-timeout).
const DefaultShutdownTimeout = 30 * time.Second
