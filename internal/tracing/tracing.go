// Package tracing makes OpenTelemetry spans of Firehose's work on an event:
// "firehose.process" in the processor, a child of the trace context the
// producer put in the raw record's headers (W3C traceparent), and
// "firehose.deliver" in a connector, a child of its batch's first event's
// process span and linked to the others'. The processor writes its span's
// context into the event's headers, so the chain survives the hop through
// Kafka.
//
// Tracing is off unless Setup is given an endpoint: then Enabled is false,
// no span is made and no header is parsed for it, so it costs nothing.
package tracing

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer  atomic.Pointer[trace.Tracer]
	enabled atomic.Bool
	// propagator reads and writes W3C trace context headers.
	propagator = propagation.TraceContext{}
)

// Enabled reports whether spans are made.
func Enabled() bool { return enabled.Load() }

// Tracer is the tracer of Firehose's spans; only call it when Enabled.
func Tracer() trace.Tracer { return *tracer.Load() }

// Use makes spans with tp from now on (Setup calls it; tests give an
// in-memory provider). A nil tp turns tracing off.
func Use(tp trace.TracerProvider) {
	if tp == nil {
		enabled.Store(false)
		return
	}
	t := tp.Tracer("github.com/firehose/firehose")
	tracer.Store(&t)
	enabled.Store(true)
}

// Setup exports spans to cfg.Endpoint with OTLP over HTTP, when it is set,
// and returns the function that flushes and stops the export on shutdown.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if cfg.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint+"/v1/traces"))
	if err != nil {
		return nil, fmt.Errorf("tracing.endpoint: %w", err)
	}
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))),
	)
	Use(tp)
	return func(ctx context.Context) error {
		Use(nil)
		return tp.Shutdown(ctx)
	}, nil
}

// Extract returns ctx with the trace context of a record's headers, if it
// has one.
func Extract(ctx context.Context, hs []kgo.RecordHeader) context.Context {
	return propagator.Extract(ctx, headers{&hs})
}

// Inject writes the trace context of ctx into *hs, replacing any there.
func Inject(ctx context.Context, hs *[]kgo.RecordHeader) {
	propagator.Inject(ctx, headers{hs})
}

// Propagator is the W3C trace context propagator, for HTTP headers.
func Propagator() propagation.TextMapPropagator { return propagator }

// headers adapts Kafka record headers to a propagation carrier.
type headers struct{ hs *[]kgo.RecordHeader }

func (h headers) Get(key string) string {
	for _, x := range *h.hs {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}

func (h headers) Set(key, value string) {
	for i, x := range *h.hs {
		if x.Key == key {
			(*h.hs)[i].Value = []byte(value)
			return
		}
	}
	*h.hs = append(*h.hs, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (h headers) Keys() []string {
	keys := make([]string, len(*h.hs))
	for i, x := range *h.hs {
		keys[i] = x.Key
	}
	return keys
}

// The W3C trace context headers, and what they may hold.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	// MaxTracestate is the longest tracestate carried: the W3C
	// specification's 32 members of at most 256 characters leave room,
	// and propagators may cut at 512.
	MaxTracestate = 512
)

// ValidTraceparent reports whether v is a W3C traceparent: a version
// other than ff, a trace id and a parent id not all zeros, and flags,
// lower-case hex joined by dashes (55 bytes for version 00; later
// versions may append fields after a dash).
func ValidTraceparent(v []byte) bool {
	if len(v) < 55 || (len(v) > 55 && (v[0] == '0' && v[1] == '0' || v[55] != '-' || len(v) > 512)) {
		return false
	}
	for i, c := range v[:55] {
		switch i {
		case 2, 35, 52:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	for _, c := range v[55:] {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	allZero := func(b []byte) bool {
		for _, c := range b {
			if c != '0' {
				return false
			}
		}
		return true
	}
	return string(v[:2]) != "ff" && !allZero(v[3:35]) && !allZero(v[36:52])
}

// ValidTracestate reports whether v may travel as a tracestate header: at
// most MaxTracestate bytes of printable ASCII (no CR, LF or other control
// byte that could split a header).
func ValidTracestate(v []byte) bool {
	if len(v) > MaxTracestate {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
