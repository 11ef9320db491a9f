// on_error: rules that choose what a failed delivery does, by the
// destination's HTTP status, its error code and the error's class.

package connectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/internal/yamlconf"
)

// Error classes: what a failed delivery was, as on_error rules name it.
// An error has at most one of the specific classes, and is either
// permanent (by default dead-lettered, or stopping the connector) or
// retryable (by default retried).
const (
	ClassTimeout    = "timeout"    // no answer in time: HTTP 408 or 504, a network or client timeout
	ClassThrottled  = "throttled"  // the destination asks to slow down: HTTP 429, S3 SlowDown, Kinesis ProvisionedThroughputExceeded, gRPC ResourceExhausted, Kafka THROTTLING_QUOTA_EXCEEDED
	ClassConnection = "connection" // no answer at all: refused, reset, or closed early
	ClassServer     = "server"     // the destination failed: HTTP 5xx, Kinesis InternalFailure, gRPC Unavailable or Internal
	ClassTooLarge   = "too_large"  // a payload over the destination's size limit: HTTP 413, Kafka MESSAGE_TOO_LARGE, over Kinesis's 1 MiB or Pub/Sub's 10 MB
	ClassAuth       = "auth"       // refused credentials or permissions: HTTP 401, 403, 407
	ClassRejected   = "rejected"   // any other refusal of the payload or request: another 4xx, an invalid record
	ClassPermanent  = "permanent"  // any error the runtime does not retry by default
	ClassRetryable  = "retryable"  // any error the runtime retries by default
)

// ErrorClasses are the classes an on_error rule may name, in the order
// error messages list them.
var ErrorClasses = []string{ClassTimeout, ClassThrottled, ClassConnection, ClassServer, ClassTooLarge, ClassAuth, ClassRejected, ClassPermanent, ClassRetryable}

// Actions of an on_error rule.
const (
	ActionRetry = "retry" // retried with backoff, until retry.max_attempts; then dead-lettered
	ActionDLQ   = "dlq"   // dead-lettered at once, and the partition goes on
	ActionDrop  = "drop"  // counted and logged, neither retried nor dead-lettered
	ActionStop  = "stop"  // the connector stops; nothing past the batch is committed
)

// ErrorActions are the actions of an on_error rule.
var ErrorActions = []string{ActionRetry, ActionDLQ, ActionDrop, ActionStop}

// Failure is what on_error rules match of one failed delivery.
type Failure struct {
	Status    int    // the HTTP status of the destination's answer; 0: none
	Code      string // the destination's error code; "": none
	Class     string // one of the specific ErrorClasses; "": none known
	Permanent bool
}

// FailureOf describes err as on_error rules see it. A class the
// destination did not give is derived from the status, then from the
// error: a timeout, or a connection that failed.
func FailureOf(err error) Failure {
	f := Failure{Permanent: IsPermanent(err)}
	var c *classified
	if errors.As(err, &c) {
		f.Status, f.Code, f.Class = c.status, c.code, c.class
	}
	if f.Class == "" {
		f.Class = classOfStatus(f.Status)
	}
	if f.Class == "" && f.Status == 0 {
		var ne net.Error
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			f.Class = ClassTimeout
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
			errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
			f.Class = ClassConnection
		case f.Permanent:
			f.Class = ClassRejected
		}
	}
	return f
}

func classOfStatus(st int) string {
	switch {
	case st == 0:
		return ""
	case st == 408 || st == 504:
		return ClassTimeout
	case st == 429:
		return ClassThrottled
	case st == 413:
		return ClassTooLarge
	case st == 401 || st == 403 || st == 407:
		return ClassAuth
	case st >= 500:
		return ClassServer
	}
	return ClassRejected
}

// ErrorRule is one rule of on_error: it matches a failed delivery when
// each matcher it has matches (one of the values listed), and a rule
// without matchers matches every error. The first rule that matches
// chooses the action; an error no rule matches keeps the default: retried
// when retryable, on_permanent_error when permanent.
type ErrorRule struct {
	// Status: HTTP statuses, each a code (404) or a class of them (4xx).
	Status Strings `yaml:"status"`
	// Class: error classes (ErrorClasses).
	Class Strings `yaml:"class"`
	// Code: the destination's error codes, as it spells them: a Kafka
	// error name (MESSAGE_TOO_LARGE), an AWS error code (SlowDown,
	// ProvisionedThroughputExceededException), a gRPC code
	// (InvalidArgument).
	Code   Strings `yaml:"code"`
	Action string  `yaml:"action"` // retry, dlq, drop or stop
}

// Strings is a list of strings that may be written as one scalar.
type Strings []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (s *Strings) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = Strings{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// String names the rule's matchers, as metrics label the events it drops.
func (r ErrorRule) String() string {
	var parts []string
	for _, m := range []struct {
		key    string
		values []string
	}{{"status", r.Status}, {"class", r.Class}, {"code", r.Code}} {
		if len(m.values) > 0 {
			parts = append(parts, m.key+"="+strings.Join(m.values, ","))
		}
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

// statusRange is one status matcher: [lo, hi].
type statusRange struct{ lo, hi int }

// parseStatus reads 404 or 4xx; statuses from 300 to 599, as no answer
// below is an error.
func parseStatus(s string) (statusRange, error) {
	if len(s) == 3 && strings.HasSuffix(strings.ToLower(s), "xx") && s[0] >= '3' && s[0] <= '5' {
		lo := int(s[0]-'0') * 100
		return statusRange{lo, lo + 99}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 300 || n > 599 {
		return statusRange{}, fmt.Errorf("%q is not an error status: a code from 300 to 599, or 3xx, 4xx or 5xx", s)
	}
	return statusRange{n, n}, nil
}

// ErrorSources is what a destination type's errors carry, for
// validation to refuse a rule that can never match.
type ErrorSources struct {
	Status bool // HTTP statuses
	Codes  bool // error codes of its own
	// Classes are the specific classes its errors can have (permanent
	// and retryable are always possible).
	Classes []string
}

// validErrorRules reports every problem of rules (paths relative to
// on_error): unknown actions, classes and statuses, and a rule that
// earlier ones leave nothing to match.
func validErrorRules(rules []ErrorRule) error {
	var v yamlconf.Problems
	for i, r := range rules {
		at := fmt.Sprintf("[%d]", i)
		v.OneOf(at+".action", r.Action, ErrorActions)
		for _, s := range r.Status {
			if _, err := parseStatus(s); err != nil {
				v.Add(at+".status", "%v", err)
			}
		}
		for _, c := range r.Class {
			v.OneOf(at+".class", c, ErrorClasses)
		}
		for _, c := range r.Code {
			if c == "" {
				v.Add(at+".code", "must not be empty")
			}
		}
		for j := range i {
			if covers(rules[j], r) {
				v.Add(at, "never matches: on_error[%d] (%s) matches every error it does", j, rules[j])
				break
			}
		}
	}
	return v.Err()
}

// covers reports whether every error b matches is matched by a: each of
// a's matchers is absent or lists all b's values for it.
func covers(a, b ErrorRule) bool {
	if len(a.Status) > 0 {
		if len(b.Status) == 0 {
			return false
		}
		for _, s := range b.Status {
			br, err := parseStatus(s)
			if err != nil {
				return false
			}
			if !slices.ContainsFunc(a.Status, func(x string) bool {
				ar, err := parseStatus(x)
				return err == nil && ar.lo <= br.lo && br.hi <= ar.hi
			}) {
				return false
			}
		}
	}
	subset := func(a, b []string) bool {
		if len(a) == 0 {
			return true
		}
		if len(b) == 0 {
			return false
		}
		for _, x := range b {
			if !slices.Contains(a, x) {
				return false
			}
		}
		return true
	}
	return subset(a.Class, b.Class) && subset(a.Code, b.Code)
}

// Check reports the rules that can never match because this
// destination's errors do not carry what they match (paths relative to
// on_error).
func (src ErrorSources) Check(rules []ErrorRule) error {
	var v yamlconf.Problems
	for i, r := range rules {
		at := fmt.Sprintf("[%d]", i)
		switch {
		case len(r.Status) > 0 && !src.Status:
			v.Add(at+".status", "never matches: this destination's errors have no HTTP status (match class or code)")
		case len(r.Code) > 0 && !src.Codes:
			v.Add(at+".code", "never matches: this destination's errors have no error code of their own (match status or class)")
		}
		for _, c := range r.Class {
			if c != ClassPermanent && c != ClassRetryable && slices.Contains(ErrorClasses, c) && !slices.Contains(src.Classes, c) {
				v.Add(at+".class", "never matches: this destination's errors are never %s (it has: %s)", c, strings.Join(append(slices.Clone(src.Classes), ClassPermanent, ClassRetryable), ", "))
			}
		}
	}
	return v.Err()
}

// errorRules are a connector's on_error rules, compiled.
type errorRules struct {
	rules []compiledRule
	// permanent is the default action of a permanent error: dlq or stop
	// (on_permanent_error).
	permanent string
}

type compiledRule struct {
	status []statusRange
	class  []string
	code   []string
	action string
	name   string // ErrorRule.String, for logs and metrics
}

func compileErrorRules(c Config) errorRules {
	out := errorRules{permanent: c.OnPermanentError}
	for _, r := range c.OnError {
		cr := compiledRule{class: r.Class, code: r.Code, action: r.Action, name: r.String()}
		for _, s := range r.Status {
			if sr, err := parseStatus(s); err == nil {
				cr.status = append(cr.status, sr)
			}
		}
		out.rules = append(out.rules, cr)
	}
	return out
}

// decision is what to do with a failed delivery, and the rule that chose
// it ("" for the default).
type decision struct {
	action string
	rule   string
}

// decide chooses what err does. A record the sink did not get to, or
// a request the runtime cancelled, is always tried again: it did not fail.
func (rs errorRules) decide(err error) decision {
	if errors.Is(err, ErrNotWritten) || errors.Is(err, context.Canceled) {
		return decision{action: ActionRetry}
	}
	f := FailureOf(err)
	for _, r := range rs.rules {
		if r.matches(f) {
			return decision{action: r.action, rule: r.name}
		}
	}
	if f.Permanent {
		if rs.permanent == "stop" {
			return decision{action: ActionStop}
		}
		return decision{action: ActionDLQ}
	}
	return decision{action: ActionRetry}
}

func (r compiledRule) matches(f Failure) bool {
	if len(r.status) > 0 && !slices.ContainsFunc(r.status, func(s statusRange) bool { return s.lo <= f.Status && f.Status <= s.hi }) {
		return false
	}
	if len(r.code) > 0 && (f.Code == "" || !slices.Contains(r.code, f.Code)) {
		return false
	}
	if len(r.class) > 0 && !slices.ContainsFunc(r.class, func(c string) bool {
		switch c {
		case ClassPermanent:
			return f.Permanent
		case ClassRetryable:
			return !f.Permanent
		}
		return c == f.Class
	}) {
		return false
	}
	return true
}
