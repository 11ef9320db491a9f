package firehosetest_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/firehose/firehose/firehosetest"
)

func event(account, resource string, seq int, typ string) string {
	return fmt.Sprintf(`{"event_id":"evt_%s_%d","timestamp":"2026-01-01T00:00:0%dZ","account_id":%q,"resource_id":%q,"sequence":%d,"event_type":%q,"lead_data":{"ssn":"123-45-6789","email":"ann.b@example.com"}}`,
		resource, seq, seq, account, resource, seq, typ)
}

// What a user's suite does: start Firehose, produce, and read what the file
// connector delivered, masked, in order per resource, a duplicate dropped;
// and the same events through the pull API with a token.
func TestStartProduceAndReadBack(t *testing.T) {
	produceAndReadBack(t, firehosetest.Start(t, firehosetest.Options{Tokens: map[string]string{"acc_1": "token-of-acc-1"}}))
}

// The same with Firehose and its broker in containers (testcontainers-go;
// make test runs it on podman), producing from the host with franz-go.
func TestStartContainerProduceAndReadBack(t *testing.T) {
	produceAndReadBack(t, firehosetest.StartContainer(t, firehosetest.ContainerOptions{Options: firehosetest.Options{Tokens: map[string]string{"acc_1": "token-of-acc-1"}}}))
}

// And against a broker the suite runs itself (here the in-process one of
// another Firehose, whose topics this one shares by name: it gets its own
// through a config of its own).
func TestStartContainerOnTheSuitesBroker(t *testing.T) {
	other := firehosetest.Start(t, firehosetest.Options{})
	produceAndReadBack(t, firehosetest.StartContainer(t, firehosetest.ContainerOptions{Options: firehosetest.Options{
		Broker: other.Broker,
		Tokens: map[string]string{"acc_1": "token-of-acc-1"},
		Config: `
kafka:
  brokers: ["${BROKER}"]
topology:
  raw: {name: c.raw}
  events: {name: c.events}
  dlq: {name: c.dlq}
  state: {name: c.state}
processor: {group: c-processor, transactional_id: c-processor}
connectors:
  - name: files
    type: file
    group: c-files
    batch: {max_events: 1000, max_age: 200ms}
    encoding: ndjson
    compression: none
    file: {dir: "${OUT}"}
`,
	}}))
}

func produceAndReadBack(t *testing.T, fh *firehosetest.Firehose) {
	fh.Produce(t,
		event("acc_1", "lead_1", 1, "lead.created"),
		event("acc_1", "lead_1", 2, "lead.updated"),
		event("acc_1", "lead_1", 2, "lead.updated"), // a duplicate
		event("acc_2", "lead_2", 1, "lead.created"),
	)
	got := fh.WaitDelivered(t, 3)
	if len(got) != 3 {
		t.Fatalf("delivered %d events, want 3 (the duplicate dropped)", len(got))
	}
	seqs := map[string][]float64{}
	for _, e := range got {
		ld := e["lead_data"].(map[string]any)
		if ld["ssn"] != "***-**-6789" || ld["email"] != "a***@example.com" {
			t.Fatalf("not masked: %v", ld)
		}
		seqs[e["resource_id"].(string)] = append(seqs[e["resource_id"].(string)], e["sequence"].(float64))
	}
	if fmt.Sprint(seqs["lead_1"]) != "[1 2]" || fmt.Sprint(seqs["lead_2"]) != "[1]" {
		t.Fatalf("sequences per resource %v", seqs)
	}

	page := fh.Pull(t, "token-of-acc-1", "tail")
	if len(page.Items) != 2 || page.Items[0].Meta.ResourceID != "lead_1" || page.Meta.Position == "" {
		t.Fatalf("pull API page %+v: want acc_1's two events", page)
	}
	var first struct {
		LeadData struct{ SSN string } `json:"lead_data"`
	}
	if err := json.Unmarshal(page.Items[0].Data, &first); err != nil || first.LeadData.SSN != "***-**-6789" {
		t.Fatalf("pull API event %s: want it masked (%v)", page.Items[0].Data, err)
	}
}

// Two Firehoses on one suite broker, in parallel, with the same config:
// each delivers its own events only, and an event of one never meets the
// other's dedupe state (the same resource and sequence in both).
func TestStartsOnOneBrokerAreApart(t *testing.T) {
	shared := firehosetest.Start(t, firehosetest.Options{})
	a := firehosetest.Start(t, firehosetest.Options{Broker: shared.Broker})
	b := firehosetest.Start(t, firehosetest.Options{Broker: shared.Broker})
	if a.Config.Topology.Raw.Name == b.Config.Topology.Raw.Name || a.Config.Processor.TransactionalID == b.Config.Processor.TransactionalID ||
		a.Config.Connectors[0].Group == b.Config.Connectors[0].Group {
		t.Fatalf("both run on %s, %s, %s", a.Config.Topology.Raw.Name, a.Config.Processor.TransactionalID, a.Config.Connectors[0].Group)
	}
	a.Produce(t, event("acc_1", "lead_1", 1, "from.a"))
	b.Produce(t, event("acc_1", "lead_1", 1, "from.b"))
	for name, fh := range map[string]*firehosetest.Firehose{"a": a, "b": b} {
		got := fh.WaitDelivered(t, 1)
		if len(got) != 1 || got[0]["event_type"] != "from."+name {
			t.Fatalf("%s delivered %v", name, got)
		}
	}
	// Nothing of one reaches the other afterwards either.
	a.Produce(t, event("acc_1", "lead_1", 2, "from.a"))
	if got := a.WaitDelivered(t, 2); len(got) != 2 {
		t.Fatalf("a delivered %v", got)
	}
	if got := b.Delivered(t); len(got) != 1 || got[0]["event_type"] != "from.b" {
		t.Fatalf("b delivered %v", got)
	}
	if got := shared.Delivered(t); len(got) != 0 {
		t.Fatalf("the suite broker's own Firehose delivered %v", got)
	}
}
