package pubsub

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/schemas"
)

// outage fails every Publish until it ends.
type outage struct {
	until   time.Time
	refused atomic.Int64
}

func (o *outage) React(any) (bool, any, error) {
	if time.Now().After(o.until) {
		return false, nil, nil
	}
	o.refused.Add(1)
	return true, nil, status.Error(codes.Unavailable, "injected outage")
}

// start runs pstest and a sink publishing to it. publishTimeout is short in
// the outage test, so that refused publishes come back as batch retries
// within the test; elsewhere it is the default.
func start(t *testing.T, publishTimeout time.Duration, opts ...pstest.ServerReactorOption) (*pstest.Server, *Sink) {
	t.Helper()
	srv := pstest.NewServer(opts...)
	t.Cleanup(func() { srv.Close() })
	cfg := Config{Project: "p", Topic: "events", PublishTimeout: publishTimeout}
	cfg.Defaults()
	cfg.options = []option.ClientOption{option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	if _, err := s.client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/p/topics/events"}); err != nil {
		t.Fatal(err)
	}
	return srv, s
}

// deliverAll delivers each batch until it succeeds, as the runtime does.
func deliverAll(t *testing.T, s *Sink, evs []*schemas.Event) int {
	t.Helper()
	retries := 0
	for i := 0; i < len(evs); i += 500 {
		b := connectortest.MakeBatch(t, 0, int64(i), evs[i:i+500], "ndjson", "none")
		for j, r := range b.Records { // the producer's trace context, carried by the processor
			r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte("tp-" + evs[i+j].EventID)}, {Key: "firehose.connector", Value: []byte("x")}}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := s.Deliver(context.Background(), b)
			if err == nil {
				break
			}
			if connectors.IsPermanent(err) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			retries++
			time.Sleep(100 * time.Millisecond)
		}
	}
	return retries
}

// check asserts every event arrived, keyed and attributed right, each
// ordering key's messages in order of first arrival.
func check(t *testing.T, srv *pstest.Server, evs []*schemas.Event) {
	t.Helper()
	var got []*schemas.Event
	for _, m := range srv.Messages() {
		e, err := schemas.JSON{}.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.OrderingKey != e.ResourceID || m.Attributes["event_type"] != e.EventType || m.Attributes["account_id"] != e.AccountID || m.Attributes["event_id"] != e.EventID ||
			m.Attributes["traceparent"] != "tp-"+e.EventID || m.Attributes["firehose.connector"] != "" {
			t.Fatalf("message for %s: ordering key %q, attributes %v", e.EventID, m.OrderingKey, m.Attributes)
		}
		got = append(got, e)
	}
	connectortest.CheckOrder(t, evs, got, false)
}

// A slow machine may time a publish out and retry the batch, which is
// allowed to duplicate (at least once); so the test asserts that every event
// arrives keyed and in order, and that no event is repeated when no batch was
// retried, never that there were no retries.
func TestPublishOrderKeysAndAttributes(t *testing.T) {
	srv, s := start(t, 0)
	evs := connectortest.EventsOver(21, 500, 20000)
	retries := deliverAll(t, s, evs)
	check(t, srv, evs)
	if n := len(srv.Messages()); retries == 0 && n != len(evs) {
		t.Fatalf("%d messages for %d events with no batch retried", n, len(evs))
	}
}

func TestOutageLosesNothingAndKeepsOrder(t *testing.T) {
	o := &outage{until: time.Now().Add(4 * time.Second)}
	srv, s := start(t, time.Second, pstest.ServerReactorOption{FuncName: "Publish", Reactor: o})
	evs := connectortest.EventsOver(22, 500, 20000)
	retries := deliverAll(t, s, evs)
	if o.refused.Load() == 0 || retries == 0 {
		t.Fatalf("the outage refused %d publishes and caused %d retries; the test proved nothing", o.refused.Load(), retries)
	}
	check(t, srv, evs)
	t.Logf("%d publishes refused, %d batch retries, %d messages for %d events", o.refused.Load(), retries, len(srv.Messages()), len(evs))
}

// The publisher bundles up to the connector's batch bounds, within
// Pub/Sub's per-call limits.
func TestPublisherBundlesFollowTheBatchBounds(t *testing.T) {
	for _, tc := range []struct {
		batch        config.Batch
		count, bytes int
	}{
		{config.Batch{MaxEvents: 500, MaxBytes: 2_000_000}, 500, 2_000_000},
		{config.Batch{MaxEvents: 100000, MaxBytes: 64 << 20}, 1000, 9_000_000},
	} {
		srv := pstest.NewServer()
		cfg := Config{Project: "p", Topic: "events"}
		cfg.Defaults()
		cfg.SetBatch(tc.batch)
		cfg.options = []option.ClientOption{option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
		s, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.pub.PublishSettings; got.CountThreshold != tc.count || got.ByteThreshold != tc.bytes {
			t.Errorf("batch %+v: bundles of %d messages and %d bytes, want %d and %d", tc.batch, got.CountThreshold, got.ByteThreshold, tc.count, tc.bytes)
		}
		s.Close(context.Background())
		srv.Close()
	}
}
