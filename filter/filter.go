// Package filter decides which events continue, from rules in config: by
// event type with wildcards, by outcome, and by expressions over any field
// (metadata.price > 20, lead_data.state == "CA",
// outcome == "failure" && event_type matches "^recipient\\."). The
// processor and every connector use the same syntax.
//
// Expressions are expr-lang/expr programs, compiled and type-checked once
// at start against the event's fields; they cannot have side effects.
package filter

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr"

	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/schemas"
)

// Config is a filter section. An event continues when every set condition
// holds: its type matches one of EventTypes (when set) and none of
// ExcludeEventTypes, its outcome is one of Outcomes (when set), and every
// Where expression is true.
type Config struct {
	// EventTypes are glob patterns (recipient.*, lead.created).
	EventTypes []string `yaml:"event_types"`
	// ExcludeEventTypes are glob patterns of types to drop.
	ExcludeEventTypes []string `yaml:"exclude_event_types"`
	// Outcomes to keep, e.g. [failure, error].
	Outcomes []string `yaml:"outcomes"`
	// Where are boolean expressions that must all be true.
	Where []Rule `yaml:"where"`
}

// Rule is one expression and what to do when it fails on an event (a field
// of the wrong type, say).
type Rule struct {
	Expr string `yaml:"expr"`
	// OnError is no_match (default: the event does not pass) or dlq
	// (the event goes to the dead-letter topic with the error).
	OnError string `yaml:"on_error"`
}

// Policies of Rule.OnError.
const (
	NoMatch = "no_match"
	DLQ     = "dlq"
)

// Env is what an expression sees: the event's fields by their JSON names.
// metadata, lead_data and extra (the unknown top-level fields) are decoded
// only for expressions that use them, and only the constant paths they
// name when they name nothing else of them.
type Env struct {
	EventID      string         `expr:"event_id"`
	Timestamp    string         `expr:"timestamp"`
	AccountID    string         `expr:"account_id"`
	ResourceID   string         `expr:"resource_id"`
	Sequence     int64          `expr:"sequence"`
	EventType    string         `expr:"event_type"`
	ResourceType string         `expr:"resource_type"`
	FlowID       string         `expr:"flow_id"`
	LeadID       string         `expr:"lead_id"`
	EntityType   string         `expr:"entity_type"`
	EntityID     string         `expr:"entity_id"`
	Outcome      string         `expr:"outcome"`
	DurationMS   int64          `expr:"duration_ms"`
	Metadata     map[string]any `expr:"metadata"`
	LeadData     map[string]any `expr:"lead_data"`
	Extra        map[string]any `expr:"extra"`
}

// Filter is a compiled Config. It is safe for concurrent use.
type Filter struct {
	include, exclude []string
	outcomes         []string
	rules            []rule
	needs            needs
	fast             bool // every rule has a fast program
}

type rule struct {
	program
	onError string
}

// Error is a rule that failed on one event under the dlq policy.
type Error struct {
	Expr string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("filter %q: %v", e.Expr, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Compile checks and compiles c. Its errors are *FieldError-like values
// carrying the path within the section (event_types[1], where[0].expr) so
// config can point at the line; see Problems.
func Compile(c Config) (*Filter, error) {
	f := &Filter{include: c.EventTypes, exclude: c.ExcludeEventTypes, outcomes: c.Outcomes}
	var errs []error
	for i, p := range c.EventTypes {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, &Problem{Path: fmt.Sprintf("event_types[%d]", i), Msg: fmt.Sprintf("bad pattern %q: %v", p, err)})
		}
	}
	for i, p := range c.ExcludeEventTypes {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, &Problem{Path: fmt.Sprintf("exclude_event_types[%d]", i), Msg: fmt.Sprintf("bad pattern %q: %v", p, err)})
		}
	}
	for i, r := range c.Where {
		if r.OnError == "" {
			r.OnError = NoMatch
		}
		if r.OnError != NoMatch && r.OnError != DLQ {
			errs = append(errs, &Problem{Path: fmt.Sprintf("where[%d].on_error", i), Msg: fmt.Sprintf("must be %s or %s, got %q", NoMatch, DLQ, r.OnError)})
		}
		prog, err := expr.Compile(r.Expr, expr.Env(Env{}), expr.AsBool())
		if err != nil {
			errs = append(errs, &Problem{Path: fmt.Sprintf("where[%d].expr", i), Msg: fmt.Sprintf("%q does not compile: %v", r.Expr, err)})
			continue
		}
		f.needs.read(prog.Node())
		f.rules = append(f.rules, rule{program: program{src: r.Expr, slow: prog}, onError: r.OnError})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f.fast = len(f.rules) > 0
	for i := range f.rules {
		r := &f.rules[i]
		if r.fast = f.needs.compileFast(r.src, expr.AsBool()); r.fast == nil {
			f.fast = false
		}
	}
	return f, nil
}

// Problem is a config error within a filter section.
type Problem struct {
	Path string
	Msg  string
}

func (p *Problem) Error() string { return p.Path + ": " + p.Msg }

// Empty reports whether the filter lets every event through.
func (f *Filter) Empty() bool {
	return f == nil || len(f.include) == 0 && len(f.exclude) == 0 && len(f.outcomes) == 0 && len(f.rules) == 0
}

// Scalar reports whether the filter reads only an event's top-level scalar
// fields (types and outcomes; no rules), so that schemas.DecodeHeader
// gives it what it needs.
func (f *Filter) Scalar() bool { return f == nil || len(f.rules) == 0 }

// Match reports whether e passes. The error is non-nil only when a rule
// with the dlq policy failed on e; it is an *Error.
func (f *Filter) Match(e *schemas.Event) (bool, error) {
	if f.Empty() {
		return true, nil
	}
	if len(f.include) > 0 && !globAny(f.include, e.EventType) {
		return false, nil
	}
	if globAny(f.exclude, e.EventType) {
		return false, nil
	}
	if len(f.outcomes) > 0 && !slices.Contains(f.outcomes, e.Outcome) {
		return false, nil
	}
	if len(f.rules) == 0 {
		return true, nil
	}
	m := f.needs.machine(e, f.fast)
	defer m.release()
	for _, r := range f.rules {
		out, err := m.run(&f.needs, e, r.program)
		if err != nil {
			if r.onError == DLQ {
				return false, &Error{Expr: r.src, Err: err}
			}
			return false, nil
		}
		if b, _ := out.(bool); !b {
			return false, nil
		}
	}
	return true, nil
}

func globAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

// globMatch is path.Match for a pattern that compiled, with the common
// shapes (an exact type, a prefix and "*") matched without it: every event
// goes through here.
func globMatch(p, s string) bool {
	switch i := strings.IndexAny(p, `*?[\`); {
	case i < 0:
		return p == s
	case i == len(p)-1 && p[i] == '*':
		return strings.HasPrefix(s, p[:i]) && !strings.Contains(s[i:], "/")
	}
	ok, _ := path.Match(p, s)
	return ok
}

// Validate compiles c and returns its problems as config field errors,
// with paths relative to the filter's section.
func Validate(c Config) error {
	_, err := Compile(c)
	if err == nil {
		return nil
	}
	var v yamlconf.Problems
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var p *Problem
		if errors.As(e, &p) {
			v.Add(p.Path, "%s", p.Msg)
		} else {
			v.Add("", "%v", e)
		}
	}
	return v.Err()
}

// Expr is one compiled expression over an event's fields (Env), with any
// result type: what a connector's set transform computes.
type Expr struct {
	program
	needs needs
}

// CompileExpr compiles and type-checks src against Env.
func CompileExpr(src string) (*Expr, error) {
	prog, err := expr.Compile(src, expr.Env(Env{}))
	if err != nil {
		return nil, fmt.Errorf("%q does not compile: %v", src, err)
	}
	x := &Expr{program: program{src: src, slow: prog}}
	x.needs.read(prog.Node())
	x.fast = x.needs.compileFast(src)
	return x, nil
}

// Eval runs the expression on e.
func (x *Expr) Eval(e *schemas.Event) (any, error) {
	m := x.needs.machine(e, x.fast != nil)
	defer m.release()
	out, err := m.run(&x.needs, e, x.program)
	if err != nil {
		return nil, &Error{Expr: x.src, Err: err}
	}
	return out, nil
}

// Type is the expression's result type as the type-checker knows it
// before any event: interface{} when only an event can tell.
func (x *Expr) Type() reflect.Type { return x.slow.Node().Type() }
