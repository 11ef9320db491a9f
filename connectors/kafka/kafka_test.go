package kafka

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/wait"
)

const connString = "Endpoint=sb://test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"

// selfSigned makes a certificate for 127.0.0.1 and writes its PEM to a
// file, as an operator's CA bundle would be.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca
}

// hub starts kfake as Event Hubs' Kafka endpoint looks to a client: TLS,
// SASL PLAIN, user $ConnectionString.
func hub(t *testing.T) (addr, ca string) {
	b, ca := hubBroker(t)
	return b.Addr, ca
}

func hubBroker(t *testing.T) (*embedded.Broker, string) {
	t.Helper()
	cert, ca := selfSigned(t)
	b, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "$ConnectionString", connString),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.SeedTopics(4, "hub"),
		// Event Hubs takes events up to 1 MB (Standard tier).
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "1048576"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, ca
}

// hubClient is a client of the hub, as an Event Hubs user's.
func hubClient(t *testing.T, addr, ca string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	tc, err := tlsConfig(ca)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DialTLSConfig(tc),
		kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: connString}.AsMechanism())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func eventHubsConfig(addr, ca, conn string) Config {
	c := Config{Brokers: []string{addr}, Topic: "hub", DeliveryTimeout: 3 * time.Second,
		EventHubs: EventHubs{Namespace: "test", ConnectionString: conn}, TLS: kafkaclient.TLS{CAFile: ca}}
	c.Defaults()
	return c
}

// readHub reads the hub's topic from the start until it has n records,
// or, with no n, until it is read to its end.
func readHub(t *testing.T, addr, ca string, n ...int) []*kgo.Record {
	t.Helper()
	cl := hubClient(t, addr, ca, kgo.ConsumeTopics("hub"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := int64(0)
	if len(n) > 0 {
		want = int64(n[0])
	} else {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "hub")
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	}
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from the hub", len(out), want)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func tlsConfig(ca string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// The record conformance suite against kfake as Event Hubs' Kafka
// endpoint: TLS and SASL PLAIN with the connection string. The flaky hub
// refuses every produce request for its first 3 seconds, longer than the
// sink's delivery timeout, so records fail back to the runtime.
func TestRecordSuite(t *testing.T) {
	connectortest.RunRecords(t, connectortest.RecordTarget{
		Start: func(t *testing.T, flaky bool) (func(*testing.T) connectors.RecordSink, func() []connectortest.Stored) {
			hb, ca := hubBroker(t)
			if flaky {
				refuseProduce(hb, time.Now().Add(3*time.Second), nil)
			}
			open := func(t *testing.T) connectors.RecordSink {
				cfg := eventHubsConfig(hb.Addr, ca, connString)
				cfg.DeliveryTimeout = time.Second
				sink, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return sink
			}
			read := func() []connectortest.Stored {
				var out []connectortest.Stored
				for _, r := range readHub(t, hb.Addr, ca) {
					h := map[string]string{}
					for _, x := range r.Headers {
						h[x.Key] = string(x.Value)
					}
					out = append(out, connectortest.Stored{Key: string(r.Key), Value: r.Value, Attrs: h})
				}
				return out
			}
			return open, read
		},
		TooLarge: 1 << 20, // the client's ProducerBatchMaxBytes is 1 MB
		Attrs:    true,
		Refusal:  connectors.ErrorRule{Class: connectors.Strings{connectors.ClassTimeout}},
		// A produce that timed out may still land.
		RefusalMayStore: true,
	})
}

// refuseProduce makes the broker answer every produce request with
// NotEnoughReplicas until the given time, counting them in refused.
func refuseProduce(hb *embedded.Broker, until time.Time, refused *atomic.Int64) {
	hb.RefuseProduce(kerr.NotEnoughReplicas.Code, func() bool {
		if time.Now().After(until) {
			return false
		}
		if refused != nil {
			refused.Add(1)
		}
		return true
	})
}

func TestWrongConnectionStringIsRefused(t *testing.T) {
	addr, ca := hub(t)
	sink, err := New(eventHubsConfig(addr, ca, strings.Replace(connString, "c2VjcmV0", "d3Jvbmc=", 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(context.Background())
	recs := connectortest.MakeRecords(t, sink, connectortest.EventsOver(6, 5, 10), 10)[0]
	sink.Write(context.Background(), recs)
	// kfake closes the connection when SASL fails (the client sees EOF);
	// the same server accepts the right string in the suite.
	for i, r := range recs {
		if r.Err == nil || connectors.IsPermanent(r.Err) {
			t.Fatalf("record %d: a wrong connection string must be refused by SASL and retried (an operator fixes it): %v", i, r.Err)
		}
	}
}

// runWorker runs the real connector runtime from a plain source cluster's
// events topic into the hub until ctx ends.
func runWorker(ctx context.Context, t *testing.T, src string, cfg Config, group string) (*connectors.Worker, chan error) {
	t.Helper()
	sink, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := connectors.Config{Name: "hub", Topic: "events", Group: group,
		Batch: connectors.Bounds{MaxEvents: 500, MaxBytes: 5_000_000, MaxAge: 200 * time.Millisecond},
		Retry: connectors.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}}
	w, err := connectors.New(connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json",
		Sink: sink, Kafka: []kgo.Opt{kgo.SeedBrokers(src)}, ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer sink.Close(context.Background())
		done <- w.Run(ctx)
	}()
	return w, done
}

func source(t *testing.T, evs []*schemas.Event) string {
	t.Helper()
	b, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.SeedTopics(6, "events", "events.dlq")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, e := range evs {
		v, _ := schemas.JSON{}.Append(nil, e)
		recs = append(recs, &kgo.Record{Key: []byte(e.ResourceID), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return b.Addr
}

// TestHubOutageLosesNothing: the hub refuses every produce request for a
// few seconds (kfake closes the connection); the runtime retries, and
// afterwards every event is there, each resource's in order of first
// arrival.
func TestHubOutageLosesNothing(t *testing.T) {
	hb, ca := hubBroker(t)
	evs := connectortest.EventsOver(7, 500, 20000)
	src := source(t, evs)
	// Longer than the client's delivery timeout, so batches fail and the
	// runtime, not only the client, has to retry.
	outageEnds := time.Now().Add(8 * time.Second)
	var refused atomic.Int64
	refuseProduce(hb, outageEnds, &refused)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := eventHubsConfig(hb.Addr, ca, connString)
	cfg.DeliveryTimeout = 2 * time.Second
	w, done := runWorker(ctx, t, src, cfg, "hub-outage")
	recs := readHub(t, hb.Addr, ca, len(evs))
	wait.Eventually(t, 30*time.Second, "every event delivered", func() bool { return w.Stats().Delivered.Load() >= int64(len(evs)) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if refused.Load() == 0 || w.Stats().Retries.Load() == 0 {
		t.Fatalf("the outage refused %d requests and caused %d retries; the test proved nothing", refused.Load(), w.Stats().Retries.Load())
	}
	var got []*schemas.Event
	for _, r := range recs {
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	// A record the hub stored before a lost acknowledgement may come twice.
	connectortest.CheckOrder(t, evs, got, false)
	t.Logf("%d requests refused, %d batch retries, %d records for %d events", refused.Load(), w.Stats().Retries.Load(), len(recs), len(evs))
}

// TestWrongConnectionStringCommitsNothing: the runtime keeps retrying and
// the group's offsets never move.
func TestWrongConnectionStringCommitsNothing(t *testing.T) {
	addr, ca := hub(t)
	src := source(t, connectortest.EventsOver(8, 50, 500))
	ctx, cancel := context.WithCancel(context.Background())
	w, done := runWorker(ctx, t, src, eventHubsConfig(addr, ca, strings.Replace(connString, "c2VjcmV0", "d3Jvbmc=", 1)), "hub-wrong")
	wait.Eventually(t, 30*time.Second, "two retries", func() bool { return w.Stats().Retries.Load() >= 2 })
	cancel()
	<-done
	cl, err := kgo.NewClient(kgo.SeedBrokers(src))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "hub-wrong")
	if err != nil {
		t.Fatal(err)
	}
	if w.Stats().Retries.Load() < 2 || w.Stats().Delivered.Load() != 0 {
		t.Fatalf("retries %d, delivered %d", w.Stats().Retries.Load(), w.Stats().Delivered.Load())
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.At > 0 {
			t.Fatalf("partition %d committed at %d with nothing delivered", o.Partition, o.At)
		}
	})
}

// An event just under the destination's 1 MiB limit is delivered: the
// client's batch limit is the topic's, not franz-go's default of 1,000,012
// bytes, which refused it.
func TestEventsNearOneMiBAreDelivered(t *testing.T) {
	hb, ca := hubBroker(t)
	cfg := eventHubsConfig(hb.Addr, ca, connString)
	sink, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(context.Background())
	value := bytes.Repeat([]byte("v"), 1_040_000)
	recs := []*connectors.Record{{Key: []byte("lead_1"), Value: value}}
	sink.Write(context.Background(), recs)
	if recs[0].Err != nil {
		t.Fatalf("a %d-byte record: %v", len(value), recs[0].Err)
	}
	if got := readHub(t, hb.Addr, ca, 1); len(got) != 1 || !bytes.Equal(got[0].Value, value) {
		t.Fatal("the record did not arrive whole")
	}
}

// routedTypes are the generator's event types: the routed topics.
var routedTypes = []string{"lead.created", "lead.updated", "recipient.delivered", "recipient.failed",
	"recipient.skipped", "filter.passed", "filter.rejected", "feedback.received", "deal.won"}

// A topic template routes each event to the topic of its type, every
// resource's events in order within each; an event whose type renders to
// a name Kafka refuses goes to the DLQ with the reason, and the rest go on.
func TestTopicTemplateRoutesByEventType(t *testing.T) {
	var topics []string
	for _, ty := range routedTypes {
		topics = append(topics, "leads."+ty)
	}
	addr, sink := routingSink(t, topics)
	evs := connectortest.EventsOver(21, 40, 3000)
	bad := map[string]bool{}
	for _, i := range []int{10, 500, 2999} {
		evs[i].EventType = "lead created!"
		bad[evs[i].EventID] = true
	}
	p := connectortest.StartPipeline(t, sink, evs, connectors.Config{})
	p.Drained(t)

	byTopic := readRouted(t, addr, topics, len(evs)-len(bad))
	want := map[string][]*schemas.Event{}
	for _, e := range evs {
		if !bad[e.EventID] {
			want["leads."+e.EventType] = append(want["leads."+e.EventType], e)
		}
	}
	if len(want) < 5 {
		t.Fatalf("the events span %d types; the test needs several", len(want))
	}
	for topic, w := range want {
		connectortest.CheckOrder(t, w, byTopic[topic], true)
	}
	for _, r := range p.ReadDLQ(t, len(bad)) {
		e, _ := schemas.JSON{}.Decode(r.Value)
		msg := dlq.Header(r, dlq.HeaderMessage)
		if !bad[e.EventID] || dlq.Header(r, dlq.HeaderClass) != "target" || !strings.Contains(msg, `target "leads.lead%20created%21"`) {
			t.Fatalf("dead letter %s: class %q, %q", e.EventID, dlq.Header(r, dlq.HeaderClass), msg)
		}
	}
}

// routingSink starts a destination cluster with topics and returns its
// address and a sink routing each event to "leads.{{event_type}}".
func routingSink(t *testing.T, topics []string) (string, *Sink) {
	t.Helper()
	dst, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.SeedTopics(3, topics...)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dst.Close)
	cfg := Config{Brokers: []string{dst.Addr}, Topic: "leads.{{event_type}}"}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sink, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close(context.Background()) })
	return dst.Addr, sink
}

// readRouted reads n events from topics, by topic, failing the test after
// 30 seconds.
func readRouted(t *testing.T, addr string, topics []string, n int) map[string][]*schemas.Event {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	byTopic := map[string][]*schemas.Event{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d routed records", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			e, err := schemas.JSON{}.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			byTopic[r.Topic] = append(byTopic[r.Topic], e)
			got++
		})
	}
	return byTopic
}

// A template that renders to a topic the destination does not have (an
// event type no one made a topic for) dead-letters that type's events
// with the reason, instead of retrying them for ever: the type comes
// from the producer. The other types' events arrive, in order.
func TestTopicTemplateDeadLettersMissingTopics(t *testing.T) {
	missing := map[string]bool{"leads.deal.won": true, "leads.feedback.received": true}
	var topics []string
	for _, ty := range routedTypes {
		if !missing["leads."+ty] {
			topics = append(topics, "leads."+ty)
		}
	}
	addr, sink := routingSink(t, topics)
	evs := connectortest.EventsOver(22, 30, 1500)
	p := connectortest.StartPipeline(t, sink, evs, connectors.Config{})
	p.Drained(t)

	want := map[string][]*schemas.Event{}
	gone := map[string]bool{}
	for _, e := range evs {
		if missing["leads."+e.EventType] {
			gone[e.EventID] = true
		} else {
			want["leads."+e.EventType] = append(want["leads."+e.EventType], e)
		}
	}
	if len(gone) == 0 || len(want) < 5 {
		t.Fatalf("%d events of missing types, %d types written; the test needs both", len(gone), len(want))
	}
	byTopic := readRouted(t, addr, topics, len(evs)-len(gone))
	for topic, w := range want {
		connectortest.CheckOrder(t, w, byTopic[topic], true)
	}
	dead := p.ReadDLQ(t, len(gone))
	if len(dead) != len(gone) {
		t.Fatalf("%d dead letters for %d events of missing types", len(dead), len(gone))
	}
	for _, r := range dead {
		e, _ := schemas.JSON{}.Decode(r.Value)
		msg := dlq.Header(r, dlq.HeaderMessage)
		if !gone[e.EventID] || dlq.Header(r, dlq.HeaderClass) != "target" || !strings.Contains(msg, `target "leads.`+e.EventType+`"`) || !strings.Contains(msg, "no such target") {
			t.Fatalf("dead letter %s (%s): class %q, %q", e.EventID, e.EventType, dlq.Header(r, dlq.HeaderClass), msg)
		}
		delete(gone, e.EventID)
	}
}
