package connectors_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
)

// A producer's header named as one of Firehose's, in any case, never
// reaches a record destination: each record carries event_type, account_id
// and event_id once, Firehose's, so a reader of the last header of a name
// reads the real account.
func TestRecordsNeverCarryForgedFirehoseHeaders(t *testing.T) {
	b := connectortest.MakeBatch(t, 0, 0, connectortest.EventsOver(2, 1, 2), "ndjson", "none")
	b.Records[0].Headers = []kgo.RecordHeader{
		{Key: "account_id", Value: []byte("acc_victim")}, {Key: "ACCOUNT_ID", Value: []byte("acc_victim")},
		{Key: "Event_Id", Value: []byte("forged")}, {Key: "event_type", Value: []byte("forged")},
		{Key: "FireHose.Connector", Value: []byte("other")}, {Key: "x-own", Value: []byte("kept")},
	}
	tmpl, err := connectors.ParseTemplate("{{resource_id}}")
	if err != nil {
		t.Fatal(err)
	}
	r := connectors.EncodeRecords(b, tmpl)[0]
	seen := map[string]int{}
	for _, h := range r.Headers {
		seen[strings.ToLower(h.Key)]++
		if strings.HasPrefix(strings.ToLower(h.Key), "firehose.") || string(h.Value) == "forged" || string(h.Value) == "acc_victim" {
			t.Fatalf("carried %s: %s", h.Key, h.Value)
		}
	}
	if seen["account_id"] != 1 || seen["event_id"] != 1 || seen["event_type"] != 1 || seen["x-own"] != 1 {
		t.Fatalf("headers %v", r.Headers)
	}
	if got := string(r.Headers[1].Value); got != b.Events[0].AccountID {
		t.Fatalf("account_id %q, want %q", got, b.Events[0].AccountID)
	}
}
