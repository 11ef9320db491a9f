package connectors_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/firehose/firehose/connectors"
	httpdest "github.com/firehose/firehose/connectors/http"
)

// What on_error rules see of each kind of destination error.
func TestFailureOf(t *testing.T) {
	base := errors.New("x")
	for _, tc := range []struct {
		name string
		err  error
		want connectors.Failure
	}{
		{"404", httpdest.Classify(404, "", nil, "b", "t"), connectors.Failure{Status: 404, Class: connectors.ClassRejected, Permanent: true}},
		{"413", httpdest.Classify(413, "", nil, "b", "t"), connectors.Failure{Status: 413, Class: connectors.ClassTooLarge, Permanent: true}},
		{"401", httpdest.Classify(401, "", nil, "b", "t"), connectors.Failure{Status: 401, Class: connectors.ClassAuth, Permanent: true}},
		{"429", httpdest.Classify(429, "3", nil, "b", "t"), connectors.Failure{Status: 429, Class: connectors.ClassThrottled}},
		{"504", httpdest.Classify(504, "", nil, "b", "t"), connectors.Failure{Status: 504, Class: connectors.ClassTimeout}},
		{"503", httpdest.Classify(503, "", nil, "b", "t"), connectors.Failure{Status: 503, Class: connectors.ClassServer}},
		{"code", connectors.Describe(connectors.Retryable(base, 0), 0, "SlowDown", connectors.ClassThrottled), connectors.Failure{Code: "SlowDown", Class: connectors.ClassThrottled}},
		{"deadline", connectors.Retryable(fmt.Errorf("put: %w", context.DeadlineExceeded), 0), connectors.Failure{Class: connectors.ClassTimeout}},
		{"refused", connectors.Retryable(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, 0), connectors.Failure{Class: connectors.ClassConnection}},
		{"plain", base, connectors.Failure{}},
		{"plain permanent", connectors.Permanent(base, ""), connectors.Failure{Class: connectors.ClassRejected, Permanent: true}},
	} {
		if got := connectors.FailureOf(tc.err); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
