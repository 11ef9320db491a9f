package schemas

import "fmt"

// Validate checks the rules a decoded event must meet and returns every
// broken one in a single *Error of class ClassInvalid, or nil.
func (e *Event) Validate() error {
	var ps []Problem
	req := func(field, v string) {
		if v == "" {
			ps = append(ps, Problem{field, "required"})
		}
	}
	req("event_id", e.EventID)
	if e.Timestamp.IsZero() {
		ps = append(ps, Problem{"timestamp", "required"})
	}
	req("account_id", e.AccountID)
	req("resource_id", e.ResourceID)
	req("event_type", e.EventType)
	if e.Sequence < 0 {
		ps = append(ps, Problem{"sequence", fmt.Sprintf("must be >= 0, got %d", e.Sequence)})
	}
	if e.DurationMS != nil && *e.DurationMS < 0 {
		ps = append(ps, Problem{"duration_ms", fmt.Sprintf("must be >= 0, got %d", *e.DurationMS)})
	}
	if len(ps) == 0 {
		return nil
	}
	return &Error{Class: ClassInvalid, Problems: ps}
}
