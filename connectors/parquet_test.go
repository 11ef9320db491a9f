package connectors_test

import (
	"testing"
	"time"

	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/schemas"
)

// FuzzParquetRoundTrip: any event the JSON decoder accepts comes back from
// a Parquet body as it went in (its timestamp to the microsecond, the
// column's unit), with its batch's firehose_metadata.
func FuzzParquetRoundTrip(f *testing.F) {
	for _, e := range connectortest.Events(3, 6) {
		v, _ := schemas.JSON{}.Append(nil, e)
		f.Add(v)
	}
	f.Add([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45.123456789Z","account_id":"a","resource_id":"r","sequence":-1,"event_type":"t","duration_ms":0,"metadata":{},"lead_data":{"ssn":"\u0000"},"z":[1,{"a":null}],"é":"ü"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := schemas.JSON{}.Decode(data)
		if err != nil {
			return
		}
		e.Timestamp = e.Timestamp.Truncate(time.Microsecond)
		for _, comp := range []string{"snappy", "none"} {
			b := connectortest.MakeBatch(t, 0, 0, []*schemas.Event{e, e}, "parquet", comp)
			got, err := connectortest.Decode(b.Body, "parquet", comp)
			if err != nil {
				t.Fatalf("%s: %v", comp, err)
			}
			connectortest.CheckDelivered(t, b, got)
		}
	})
}
