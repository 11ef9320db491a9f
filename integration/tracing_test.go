package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/wait"
)

// A record produced with a trace context is processed in a span that is
// the producer's child, delivered in a span that is the process span's
// child, and the webhook request carries the delivery span's context: one
// trace from the producer to the receiver, across both Kafka hops.
func TestTraceFromProducerToWebhook(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tracing.Use(tp)
	defer tracing.Use(nil)

	var mu sync.Mutex
	var received string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = r.Header.Get("traceparent")
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	b := startBroker(t)
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
api: {listen: "off"}
connectors:
  - name: hook
    type: http
    batch: {max_events: 1, max_age: 100ms}
    http: {url: "%s/events"}
`, b.Addr, hook.URL), nil)
	applyTopology(t, cfg)

	// The producer's span, its context in the record's headers.
	ctx, producer := tp.Tracer("producer").Start(context.Background(), "produce lead.created")
	var headers []kgo.RecordHeader
	tracing.Inject(ctx, &headers)
	producer.End()
	e := &schemas.Event{EventID: "e1", Timestamp: time.Now().UTC().Truncate(time.Millisecond), AccountID: "acc_1", ResourceID: "lead_1", Sequence: 1, EventType: "lead.created"}
	v, _ := schemas.JSON{}.Append(nil, e)
	cl := client(t, cfg, kgo.DefaultProduceTopic(cfg.Topology.Raw.Name))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("lead_1"), Value: v, Headers: headers}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stop := runApp(t, cfg, app.Options{})
	wait.Eventually(t, 60*time.Second, "the webhook request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received != ""
	})
	stop()

	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
	}
	process, deliver := spans["firehose.process"], spans["firehose.deliver"]
	want := producer.SpanContext()
	if process.SpanContext.TraceID() != want.TraceID() || process.Parent.SpanID() != want.SpanID() {
		t.Fatalf("process span %v has parent %v, want the producer's %v", process.SpanContext.SpanID(), process.Parent.SpanID(), want.SpanID())
	}
	if deliver.SpanContext.TraceID() != want.TraceID() || deliver.Parent.SpanID() != process.SpanContext.SpanID() {
		t.Fatalf("deliver span has parent %v, want the process span %v", deliver.Parent.SpanID(), process.SpanContext.SpanID())
	}
	wantHeader := fmt.Sprintf("00-%s-%s-%s", deliver.SpanContext.TraceID(), deliver.SpanContext.SpanID(), deliver.SpanContext.TraceFlags())
	mu.Lock()
	defer mu.Unlock()
	if received != wantHeader {
		t.Fatalf("webhook traceparent %q, want the delivery span's %q", received, wantHeader)
	}

}
