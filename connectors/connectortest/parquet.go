package connectortest

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/archive"
)

// decodeParquet reads a Parquet body back into events, by column name,
// with arrow-go's reader (tests that need an independent reader use
// DuckDB).
func decodeParquet(body []byte) ([]Delivered, error) {
	var out []Delivered
	err := archive.EachParquetRow(body, func(cols map[string]arrow.Array, row int) error {
		d, err := parquetRow(cols, row)
		if err != nil {
			return fmt.Errorf("row %d: %w", len(out), err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func parquetRow(cols map[string]arrow.Array, row int) (Delivered, error) {
	ts, ok := cols["timestamp"].(*array.Timestamp)
	if !ok || ts.DataType().(*arrow.TimestampType).Unit != arrow.Microsecond {
		return Delivered{}, fmt.Errorf("timestamp is %s, not a timestamp in microseconds", cols["timestamp"].DataType())
	}
	e, err := archive.ParquetEvent(cols, row)
	if err != nil {
		return Delivered{}, err
	}
	meta := cols[connectors.MetadataKey].(*array.Struct)
	d := Delivered{Event: e}
	b, _ := archive.BytesAt(meta.Field(0), row)
	d.BatchID = string(b)
	d.Sequence = meta.Field(1).(*array.Int64).Value(row)
	d.DeliveredAt = time.UnixMicro(int64(meta.Field(2).(*array.Timestamp).Value(row))).UTC()
	return d, nil
}
