package connectors_test

import (
	"testing"
	"time"

	"github.com/firehose/firehose/connectors"
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

// A promoted column's value is checked against its type, and absent
// values are null: a fuzzed event either fits every column or says which
// does not.
func FuzzParquetColumns(f *testing.F) {
	f.Add(`{"price":12.5,"attempt":2,"ok":true,"src":"web"}`)
	f.Add(`{"price":"cheap","attempt":2.5,"ok":"yes","src":7}`)
	f.Add(`{"price":null}`)
	cols := []connectors.Column{
		{Name: "price", Path: "metadata.price", Type: "double"},
		{Name: "attempt", Path: "metadata.attempt", Type: "long"},
		{Name: "ok", Path: "metadata.ok", Type: "boolean"},
		{Name: "src", Path: "metadata.src", Type: "string"},
	}
	f.Fuzz(func(t *testing.T, meta string) {
		e := connectortest.Events(5, 1)[0]
		e.Metadata = []byte(meta)
		b := connectortest.MakeBatch(t, 0, 0, []*schemas.Event{e}, "parquet", "none")
		p, err := connectors.NewParquet("none", cols...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := connectors.EncodeBody(p, connectors.None{}, b); err != nil {
			t.Fatalf("metadata %q: %v", meta, err)
		}
	})
}
