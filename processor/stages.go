package processor

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/schemas"
)

// FilterStage drops events the filter does not pass; a rule error under
// the dlq policy dead-letters the event.
type FilterStage struct {
	F *filter.Filter
	// Dropped counts events filtered out.
	Dropped atomic.Int64
}

// Name implements Stage.
func (s *FilterStage) Name() string { return "filter" }

// Apply implements Stage.
func (s *FilterStage) Apply(_ *kgo.Record, e *schemas.Event) (bool, error) {
	ok, err := s.F.Match(e)
	if err != nil {
		return false, &schemas.Error{Class: "filter", Problems: []schemas.Problem{{Msg: err.Error()}}, Err: err}
	}
	if !ok {
		s.Dropped.Add(1)
	}
	return ok, nil
}
