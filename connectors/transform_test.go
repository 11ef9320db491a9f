package connectors_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	httpdest "github.com/firehose/firehose/connectors/http"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/transform"
)

// A webhook connector with transform steps receives each event in
// exactly the transformed shape, with its firehose_metadata, and an event
// a set expression fails on (a modulo by zero for one event only) goes to
// the DLQ naming the step.
func TestTransformShapesWhatTheDestinationGets(t *testing.T) {
	var mu sync.Mutex
	got := map[string]map[string]any{} // by event_id
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var events []map[string]any
		if err := json.Unmarshal(body, &events); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range events {
			got[e["event_id"].(string)] = e
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	evs := generator.Unique(31, 40, 2000)
	poisoned := evs[777]
	hc := httpdest.Config{URL: srv.URL}
	hc.Defaults()
	steps := []transform.Step{
		{Select: []string{"event_id", "event_type", "resource_id", "sequence", "lead_data.email"}},
		{Rename: transform.Pairs{{Key: "event_type", Value: "type"}}},
		{Set: transform.Pairs{{Key: "seq_root", Value: fmt.Sprintf("sequence * 2 + 0 * (7 %% (resource_id == %q && sequence == %d ? 0 : 1))", poisoned.ResourceID, poisoned.Sequence)}}},
		{Drop: []string{"resource_id"}},
	}
	p := connectortest.StartPipeline(t, httpdest.New(hc), evs, connectors.Config{Encoding: "json", Compression: "none", Transform: steps})
	p.Drained(t)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(evs)-1 {
		t.Fatalf("%d events delivered of %d", len(got), len(evs)-1)
	}
	for _, e := range evs {
		if e == poisoned {
			continue
		}
		d := got[e.EventID]
		meta, _ := d[connectors.MetadataKey].(map[string]any)
		delete(d, connectors.MetadataKey)
		want := map[string]any{"event_id": e.EventID, "type": e.EventType, "sequence": float64(e.Sequence), "seq_root": float64(e.Sequence * 2)}
		var lead map[string]any
		if json.Unmarshal(e.LeadData, &lead) == nil && lead["email"] != nil {
			want["lead_data"] = map[string]any{"email": lead["email"]}
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(d)
		if string(wb) != string(gb) || meta["batch_id"] == nil {
			t.Fatalf("event %s delivered as %s with metadata %v, want %s", e.EventID, gb, meta, wb)
		}
	}
	dl := p.ReadDLQ(t, 1)
	if msg := dlq.Header(dl[0], dlq.HeaderMessage); dlq.Header(dl[0], dlq.HeaderClass) != "transform" || !strings.Contains(msg, "transform[2].set.seq_root") {
		t.Fatalf("dead letter: class %q, %q", dlq.Header(dl[0], dlq.HeaderClass), msg)
	}
}
