package kafkaclient

import (
	"iter"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Values yields the values of a poll's records, for schemas.Resolve.
func Values(fetches kgo.Fetches) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		it := fetches.RecordIter()
		for !it.Done() {
			if !yield(it.Next().Value) {
				return
			}
		}
	}
}
