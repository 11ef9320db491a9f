package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/wait"
)

const registryYAML = `
kafka:
  brokers: ["${BROKER}"]
schema_registry:
  url: ${REGISTRY}
  username: firehose
  password: ${REGISTRY_PASSWORD}
topology:
  raw: {encoding: avro-confluent}
  events: {encoding: avro-confluent}
processor:
  transactional_id: test-processor
connectors:
  - name: files
    type: file
    batch: {max_events: 100, max_age: 200ms}
    file: {dir: "${OUT}"}
api:
  listen: "off"
`

// A producer that uses a Confluent serializer registers its own schema
// (event.avsc, then an evolution with a new optional field) and writes
// Confluent-framed Avro; Firehose reads both versions by their ids,
// writes the events topic under its own subject, and a file connector
// delivers every event with the new field kept. What cannot be read is
// dead-lettered with the reason.
func TestConfluentAvroProducerThroughThePipeline(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	fake := srfake.New(srfake.WithGlobalCompat(sr.CompatBackward), srfake.WithAuth("Basic ZmlyZWhvc2U6czNjcjN0")) // firehose:s3cr3t
	t.Cleanup(fake.Close)
	cfg := loadConfig(t, registryYAML, map[string]string{"BROKER": b.Addr, "OUT": out, "REGISTRY": fake.URL(), "REGISTRY_PASSWORD": "s3cr3t"})
	applyTopology(t, cfg)

	// The producer's side: its own registry client and serializer.
	ctx := context.Background()
	prodReg, err := sr.NewClient(sr.URLs(fake.URL()), sr.BasicAuth("firehose", "s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := prodReg.CreateSchema(ctx, "events.raw-value", sr.Schema{Schema: schemas.AvroSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	_ = json.Unmarshal([]byte(schemas.AvroSchema), &s)
	s["fields"] = append(s["fields"].([]any), map[string]any{"name": "channel", "type": []any{"null", "string"}, "default": nil})
	v2text, _ := json.Marshal(s)
	v2, err := prodReg.CreateSchema(ctx, "events.raw-value", sr.Schema{Schema: string(v2text), Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("the registry refused a new optional field: %v", err)
	}
	type evolved struct {
		schemas.AvroRecord
		Channel *string `avro:"channel"`
	}
	s1, s2 := avro.MustParse(schemas.AvroSchema), avro.MustParse(string(v2text))
	var serde sr.Serde
	serde.Register(v1.ID, schemas.AvroRecord{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(s1, v) }))
	serde.Register(v2.ID, evolved{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(s2, v) }))

	g := generator.New(7, 40)
	var sent []*schemas.Event
	var recs []*kgo.Record
	web := "web"
	for i := range 400 {
		e := g.Next()
		e.Extra = nil
		r, err := schemas.ToAvro(e)
		if err != nil {
			t.Fatal(err)
		}
		var v []byte
		if i < 200 {
			v, err = serde.Encode(r)
		} else {
			v, err = serde.Encode(evolved{AvroRecord: r, Channel: &web})
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: cfg.Topology.Raw.Name, Key: []byte(e.ResourceID), Value: v})
		sent = append(sent, e)
	}
	// Among them, what cannot be read: an id the registry does not have,
	// and plain JSON.
	unknown := append(binary.BigEndian.AppendUint32([]byte{0}, 9999), 2, 4)
	recs = append(recs[:100:100], append([]*kgo.Record{
		{Topic: cfg.Topology.Raw.Name, Key: []byte("bad_id"), Value: unknown},
		{Topic: cfg.Topology.Raw.Name, Key: []byte("bad_json"), Value: []byte(`{"event_id":"e1"}`)},
	}, recs[100:]...)...)
	prod := client(t, cfg, kgo.DefaultProduceTopic(cfg.Topology.Raw.Name))
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	runApp(t, cfg, app.Options{})

	wait.Eventually(t, 60*time.Second, "every event in files", func() bool { return len(readOutput(t, out)) >= len(sent) })
	got := readOutput(t, out)
	if len(got) != len(sent) {
		t.Fatalf("delivered %d events, sent %d", len(got), len(sent))
	}
	checkExactPerResource(t, sent, got)
	withChannel := 0
	for _, l := range got {
		if c := l.Event.Extra.Get("channel"); c != nil {
			if string(c) != `"web"` {
				t.Fatalf("channel %s", c)
			}
			withChannel++
		}
	}
	if withChannel != 200 {
		t.Fatalf("%d delivered events carry the evolved schema's field, want 200", withChannel)
	}

	// The events topic is written under its own subject, framed with the
	// id the registry gave it.
	reg, ok := fake.GetSchema("events-value", 1)
	if !ok {
		t.Fatal("the events subject was not registered")
	}
	for _, r := range consumeAll(t, cfg, cfg.Topology.Events.Name, len(sent), 20*time.Second) {
		if r.Value[0] != 0 || int(binary.BigEndian.Uint32(r.Value[1:5])) != reg.ID {
			t.Fatalf("events record framed %x, want 0 and id %d", r.Value[:5], reg.ID)
		}
	}

	dead := consumeAll(t, cfg, cfg.Topology.DLQ.Name, 2, 20*time.Second)
	reasons := map[string]string{}
	for _, r := range dead {
		reasons[string(r.Key)] = dlq.Header(r, dlq.HeaderMessage)
	}
	if !strings.Contains(reasons["bad_id"], "schema id 9999 is not in the schema registry") {
		t.Errorf("unknown id dead-lettered as %q", reasons["bad_id"])
	}
	if !strings.Contains(reasons["bad_json"], "looks like plain JSON") {
		t.Errorf("plain JSON dead-lettered as %q", reasons["bad_json"])
	}
}
