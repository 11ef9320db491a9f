package connectors

import "sync"

// Acks remembers, per batch id, which events of a batch a record
// destination (Kafka, Kinesis, Pub/Sub) has already had accepted, so a
// retry of the batch sends only the rest. It is safe for concurrent use.
type Acks struct {
	mu sync.Mutex
	m  map[string][]bool
}

// maxTracked bounds the batches remembered: a batch that ended in the DLQ
// never comes back to clear its entry, and forgetting costs at most a
// resend (at least once).
const maxTracked = 10000

// For returns the accepted flags of b, one per event; the caller sets
// them as events are accepted. Different partitions' batches are used
// concurrently, one batch by one goroutine at a time.
func (a *Acks) For(b *Batch) []bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) > maxTracked {
		a.m = map[string][]bool{}
	}
	acked := a.m[b.ID]
	if acked == nil {
		acked = make([]bool, len(b.Events))
		a.m[b.ID] = acked
	}
	return acked
}

// Done forgets a batch that was delivered whole.
func (a *Acks) Done(b *Batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, b.ID)
}
