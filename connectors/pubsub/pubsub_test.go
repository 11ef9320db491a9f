package pubsub

import (
	"context"
	"fmt"
	"strings"
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

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/internal/dlq"
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

// newSink opens a sink publishing to srv. publishTimeout is short where
// the server refuses publishes, so that they come back as failures within
// the test; zero is the default.
func newSink(t *testing.T, srv *pstest.Server, publishTimeout time.Duration) *Sink {
	t.Helper()
	cfg := Config{Project: "p", Topic: "events", PublishTimeout: publishTimeout}
	cfg.Defaults()
	cfg.options = []option.ClientOption{option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRecordSuite runs the record conformance suite against pstest, the
// Pub/Sub library's own in-process server. The flaky server refuses every
// publish for its first 3 seconds, longer than the sink's publish timeout,
// so messages fail back to the runtime.
func TestRecordSuite(t *testing.T) {
	connectortest.RunRecords(t, connectortest.RecordTarget{
		Start: func(t *testing.T, flaky bool) (func(*testing.T) connectors.RecordSink, func() []connectortest.Stored) {
			var opts []pstest.ServerReactorOption
			timeout := time.Duration(0)
			if flaky {
				opts = append(opts, pstest.ServerReactorOption{FuncName: "Publish", Reactor: &outage{until: time.Now().Add(3 * time.Second)}})
				timeout = time.Second
			}
			srv := pstest.NewServer(opts...)
			t.Cleanup(func() { srv.Close() })
			created := false
			open := func(t *testing.T) connectors.RecordSink {
				s := newSink(t, srv, timeout)
				if !created {
					if _, err := s.client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/p/topics/events"}); err != nil {
						t.Fatal(err)
					}
					created = true
				}
				return s
			}
			read := func() []connectortest.Stored {
				var out []connectortest.Stored
				for _, m := range srv.Messages() {
					out = append(out, connectortest.Stored{Key: m.OrderingKey, Value: m.Data, Attrs: m.Attributes})
				}
				return out
			}
			return open, read
		},
		TooLarge: 10 << 20, // Pub/Sub takes messages up to 10 MB
		Attrs:    true,
		Refusal:  connectors.ErrorRule{Class: connectors.Strings{connectors.ClassTimeout}},
		// A publish that timed out may still land.
		RefusalMayStore: true,
	})
}

// The publisher bundles up to the connector's batch bounds, within
// Pub/Sub's per-call limits.
func TestPublisherBundlesFollowTheBatchBounds(t *testing.T) {
	for _, tc := range []struct {
		batch        connectors.Bounds
		count, bytes int
	}{
		{connectors.Bounds{MaxEvents: 500, MaxBytes: 2_000_000}, 500, 2_000_000},
		{connectors.Bounds{MaxEvents: 100000, MaxBytes: 64 << 20}, 1000, 9_000_000},
	} {
		t.Run(fmt.Sprint(tc.batch.MaxEvents), func(t *testing.T) {
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
			pub := s.acquire("")
			s.release(pub, false)
			if got := pub.PublishSettings; got.CountThreshold != tc.count || got.ByteThreshold != tc.bytes {
				t.Errorf("batch %+v: bundles of %d messages and %d bytes, want %d and %d", tc.batch, got.CountThreshold, got.ByteThreshold, tc.count, tc.bytes)
			}
			s.Close(context.Background())
			srv.Close()
		})
	}
}

// A topic template routes each event to the topic of its type, with
// every resource's events in order within each; an event whose type
// renders to a name Pub/Sub refuses, or to a topic no one created, goes
// to the DLQ with the reason.
func TestTopicTemplateRoutesByEventType(t *testing.T) {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	evs := connectortest.EventsOver(22, 40, 2000)
	bad := map[string]bool{}
	for _, i := range []int{7, 1500} {
		evs[i].EventType = "lead=created" // '=' stays in a rendered value; Pub/Sub ids take no '='
		bad[evs[i].EventID] = true
	}
	cfg := Config{Project: "p", Topic: "leads-{{event_type}}"}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.options = []option.ClientOption{option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	const missing = "deal.won" // no topic
	want := map[string][]*schemas.Event{}
	gone := map[string]bool{}
	for _, e := range evs {
		switch {
		case e.EventType == missing:
			gone[e.EventID] = true
		case !bad[e.EventID]:
			want["projects/p/topics/leads-"+e.EventType] = append(want["projects/p/topics/leads-"+e.EventType], e)
		}
	}
	if len(gone) == 0 {
		t.Fatalf("no event of type %s", missing)
	}
	for topic := range want {
		if _, err := s.client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
			t.Fatal(err)
		}
	}
	p := connectortest.StartPipeline(t, s, evs, connectors.Config{})
	p.Drained(t)
	got := map[string][]*schemas.Event{}
	for _, m := range srv.Messages() {
		e, err := schemas.JSON{}.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.OrderingKey != e.ResourceID {
			t.Fatalf("ordering key %q for resource %s", m.OrderingKey, e.ResourceID)
		}
		got[m.Topic] = append(got[m.Topic], e)
	}
	if len(want) < 5 {
		t.Fatalf("the events span %d types; the test needs several", len(want))
	}
	for topic, w := range want {
		connectortest.CheckOrder(t, w, got[topic], true)
	}
	s.mu.Lock()
	if _, kept := s.pubs["leads-"+missing]; kept || len(s.pubs) != len(want) {
		t.Errorf("publishers for %d topics (the missing one's kept: %v), want one for each of the %d topics", len(s.pubs), kept, len(want))
	}
	s.mu.Unlock()
	dead := p.ReadDLQ(t, len(bad)+len(gone))
	if len(dead) != len(bad)+len(gone) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad)+len(gone))
	}
	for _, r := range dead {
		e, _ := schemas.JSON{}.Decode(r.Value)
		msg := dlq.Header(r, dlq.HeaderMessage)
		ok := bad[e.EventID] && strings.Contains(msg, `target "leads-lead=created"`) ||
			gone[e.EventID] && strings.Contains(msg, `target "leads-deal.won"`) && strings.Contains(msg, "no such target")
		if !ok || dlq.Header(r, dlq.HeaderClass) != "target" {
			t.Fatalf("dead letter %s: class %q, %q", e.EventID, dlq.Header(r, dlq.HeaderClass), msg)
		}
	}
}
