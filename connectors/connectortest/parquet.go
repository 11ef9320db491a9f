package connectortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/schemas"
)

// decodeParquet reads a Parquet body back into events, by column name,
// with arrow-go's reader (tests that need an independent reader use
// DuckDB).
func decodeParquet(body []byte) ([]Delivered, error) {
	rdr, err := file.NewParquetReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("not a Parquet file: %w", err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return nil, err
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 1024)
	defer tr.Release()
	var out []Delivered
	for tr.Next() {
		rec := tr.RecordBatch()
		cols := map[string]arrow.Array{}
		for i, f := range rec.Schema().Fields() {
			cols[f.Name] = rec.Column(i)
		}
		for row := range int(rec.NumRows()) {
			d, err := parquetRow(cols, row)
			if err != nil {
				return nil, fmt.Errorf("row %d: %w", len(out), err)
			}
			out = append(out, d)
		}
	}
	return out, tr.Err()
}

func parquetRow(cols map[string]arrow.Array, row int) (Delivered, error) {
	str := func(name string) string {
		b, _ := bytesAt(cols[name], row)
		return string(b)
	}
	e := &schemas.Event{
		EventID: str("event_id"), AccountID: str("account_id"), ResourceID: str("resource_id"), EventType: str("event_type"),
		ResourceType: str("resource_type"), FlowID: str("flow_id"), LeadID: str("lead_id"),
		EntityType: str("entity_type"), EntityID: str("entity_id"), Outcome: str("outcome"),
	}
	ts, ok := cols["timestamp"].(*array.Timestamp)
	if !ok || ts.DataType().(*arrow.TimestampType).Unit != arrow.Microsecond {
		return Delivered{}, fmt.Errorf("timestamp is %s, not a timestamp in microseconds", cols["timestamp"].DataType())
	}
	e.Timestamp = time.UnixMicro(int64(ts.Value(row))).UTC()
	e.Sequence = cols["sequence"].(*array.Int64).Value(row)
	if d := cols["duration_ms"].(*array.Int64); d.IsValid(row) {
		v := d.Value(row)
		e.DurationMS = &v
	}
	if b, ok := bytesAt(cols["metadata"], row); ok {
		e.Metadata = json.RawMessage(b)
	}
	if b, ok := bytesAt(cols["lead_data"], row); ok {
		e.LeadData = json.RawMessage(b)
	}
	if b, ok := bytesAt(cols["extra"], row); ok {
		// Decoded as an event's top level, the fields come back as Extra.
		x, err := schemas.JSON{}.Decode(fmt.Appendf(nil, `{"event_id":"x","timestamp":"2024-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":0,"event_type":"t",%s`, b[1:]))
		if err != nil {
			return Delivered{}, fmt.Errorf("extra: %w", err)
		}
		e.Extra = x.Extra
	}
	meta := cols[connectors.MetadataKey].(*array.Struct)
	d := Delivered{Event: e}
	b, _ := bytesAt(meta.Field(0), row)
	d.BatchID = string(b)
	d.Sequence = meta.Field(1).(*array.Int64).Value(row)
	d.DeliveredAt = time.UnixMicro(int64(meta.Field(2).(*array.Timestamp).Value(row))).UTC()
	return d, nil
}

// bytesAt returns the value of a string, binary or JSON column, and false
// for a null.
func bytesAt(col arrow.Array, row int) ([]byte, bool) {
	if col == nil || col.IsNull(row) {
		return nil, false
	}
	switch c := col.(type) {
	case *array.String:
		return []byte(c.Value(row)), true
	case *array.Binary:
		return c.Value(row), true
	case array.ExtensionArray:
		return bytesAt(c.Storage(), row)
	}
	return nil, false
}
