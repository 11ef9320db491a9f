package filter

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Segment is a compiled segment expression over a profile: a boolean
// expr-lang program that sees the profile's properties, account_id and
// resource_id (properties.visits > 3 && properties.country == "NL"). It is
// safe for concurrent use.
type Segment struct {
	prog *vm.Program
}

// SegmentEnv is what a segment expression sees.
type SegmentEnv struct {
	Properties map[string]any `expr:"properties"`
	AccountID  string         `expr:"account_id"`
	ResourceID string         `expr:"resource_id"`
}

// CompileSegment compiles and type-checks a segment expression.
func CompileSegment(src string) (*Segment, error) {
	prog, err := expr.Compile(src, expr.Env(SegmentEnv{}), expr.AsBool())
	if err != nil {
		return nil, err
	}
	return &Segment{prog: prog}, nil
}

// Match evaluates the segment on a profile. An expression that fails on
// it (a property missing, or of another type) is an error, and the
// profile is not a member.
func (s *Segment) Match(env *SegmentEnv) (bool, error) {
	out, err := expr.Run(s.prog, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("segment expression returned %T", out)
	}
	return b, nil
}
