package connectors

import (
	"io"

	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/tidwall/gjson"

	"github.com/firehose/firehose/internal/buildinfo"
	"github.com/firehose/firehose/schemas"
)

// Bounds of a Parquet row group: a batch's events are written in row
// groups of at most ParquetRowGroupRows events and about
// ParquetRowGroupBytes of event JSON, so a reader needs no more than one
// row group in memory at a time, and each object is readable on its own.
const (
	ParquetRowGroupRows  = 128 * 1024
	ParquetRowGroupBytes = 64 << 20
)

// ParquetCompressions are the codecs a Parquet file's column chunks may
// be compressed with (the connector's compression).
var ParquetCompressions = map[string]compress.Compression{
	"snappy": compress.Codecs.Snappy,
	"zstd":   compress.Codecs.Zstd,
	"gzip":   compress.Codecs.Gzip,
	"lz4":    compress.Codecs.Lz4Raw,
	"none":   compress.Codecs.Uncompressed,
}

// Parquet writes a batch as one Parquet file with the fields of
// schemas/event.avsc as typed columns: timestamp a UTC TIMESTAMP in
// microseconds (what Spark, Athena, BigQuery and DuckDB all read; never
// nanoseconds, which some refuse), sequence and duration_ms INT64, the optional fields
// nullable; metadata, lead_data and the unknown top-level fields (extra)
// JSON object text with Parquet's JSON logical type; firehose_metadata a
// struct of batch_id, sequence and delivered_at. Its column chunks are
// compressed inside the file, so the connector's compression names the
// codec and the body is not compressed again.
type Parquet struct {
	schema  *arrow.Schema
	columns []Column       // promoted, after the event's own
	shaped  *shapedColumns // a transform's shape instead of the event's fields
	codec   compress.Compression
	// rowGroupRows and rowGroupBytes bound a row group; tests lower them.
	rowGroupRows  int
	rowGroupBytes int
}

// The columns, in order.
var parquetColumns = sync.OnceValue(func() *arrow.Schema {
	jsonType, err := extensions.NewJSONType(arrow.BinaryTypes.String)
	if err != nil {
		panic(err) // string is a storage type JSON takes
	}
	str := arrow.BinaryTypes.String
	ts := arrow.FixedWidthTypes.Timestamp_us // UTC
	i64 := arrow.PrimitiveTypes.Int64
	return arrow.NewSchema([]arrow.Field{
		{Name: "event_id", Type: str},
		{Name: "timestamp", Type: ts},
		{Name: "account_id", Type: str},
		{Name: "resource_id", Type: str},
		{Name: "sequence", Type: i64},
		{Name: "event_type", Type: str},
		{Name: "resource_type", Type: str, Nullable: true},
		{Name: "flow_id", Type: str, Nullable: true},
		{Name: "lead_id", Type: str, Nullable: true},
		{Name: "entity_type", Type: str, Nullable: true},
		{Name: "entity_id", Type: str, Nullable: true},
		{Name: "outcome", Type: str, Nullable: true},
		{Name: "duration_ms", Type: i64, Nullable: true},
		{Name: "metadata", Type: jsonType, Nullable: true},
		{Name: "lead_data", Type: jsonType, Nullable: true},
		{Name: "extra", Type: jsonType, Nullable: true},
		{Name: MetadataKey, Type: arrow.StructOf(
			arrow.Field{Name: "batch_id", Type: str},
			arrow.Field{Name: "sequence", Type: i64},
			arrow.Field{Name: "delivered_at", Type: ts},
			arrow.Field{Name: "replay", Type: str, Nullable: true},
		)},
	}, nil)
})

// columnTypes are the Arrow types of the promoted columns' types.
var columnTypes = map[string]arrow.DataType{
	"string":  arrow.BinaryTypes.String,
	"long":    arrow.PrimitiveTypes.Int64,
	"double":  arrow.PrimitiveTypes.Float64,
	"boolean": arrow.FixedWidthTypes.Boolean,
}

// NewParquet returns the encoder for a compression name
// (ParquetCompressions) and the promoted columns, each nullable.
func NewParquet(compression string, columns ...Column) (*Parquet, error) {
	codec, ok := ParquetCompressions[compression]
	if !ok {
		return nil, fmt.Errorf("unknown parquet compression %q", compression)
	}
	schema := parquetColumns()
	if len(columns) > 0 {
		if err := validColumns(columns); err != nil {
			return nil, err
		}
		fields := schema.Fields()
		for _, c := range columns {
			fields = append(fields, arrow.Field{Name: c.Name, Type: columnTypes[c.Type], Nullable: true})
		}
		schema = arrow.NewSchema(fields, nil)
	}
	return &Parquet{schema: schema, columns: columns, codec: codec, rowGroupRows: ParquetRowGroupRows, rowGroupBytes: ParquetRowGroupBytes}, nil
}

// Encode implements Encoder. Every event of b must be decoded (a Parquet
// body is never spliced from record values), or, for a shaped encoder,
// transformed (b.Shaped).
func (p *Parquet) Encode(w io.Writer, b *Batch) error {
	props := parquet.NewWriterProperties(
		parquet.WithCompression(p.codec),
		parquet.WithMaxRowGroupLength(int64(p.rowGroupRows)),
		parquet.WithCreatedBy("firehose "+buildinfo.Read().Version),
	)
	fw, err := pqarrow.NewFileWriter(p.schema, w, props, pqarrow.NewArrowWriterProperties())
	if err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, p.schema)
	defer rb.Release()
	rows, size := 0, 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		rec := rb.NewRecordBatch()
		defer rec.Release()
		rows, size = 0, 0
		return fw.Write(rec)
	}
	var row *shapedRow
	if p.shaped != nil {
		row = p.shaped.newRow()
	}
	err = b.Each(func(run *Batch) error {
		for i, e := range run.Events {
			if p.shaped != nil {
				size += p.shaped.appendRow(rb, run, i, row)
			} else if e == nil {
				return fmt.Errorf("parquet: event %d of batch %s was not decoded", run.Seq+i, b.ID)
			} else {
				size += appendParquetRow(rb, e, run, i)
				p.appendColumns(rb, e)
			}
			if rows++; rows >= p.rowGroupRows || size >= p.rowGroupBytes {
				if err := flush(); err != nil {
					return fmt.Errorf("parquet: %w", err)
				}
			}
		}
		return nil
	})
	if err == nil {
		if err = flush(); err != nil {
			err = fmt.Errorf("parquet: %w", err)
		}
	}
	if err != nil {
		fw.Close()
		return err
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	return nil
}

// appendParquetRow appends the i-th event of b, e, to the columns and
// returns about how many bytes it holds.
func appendParquetRow(rb *array.RecordBuilder, e *schemas.Event, b *Batch, i int) int {
	str := func(col int, s string) {
		rb.Field(col).(*array.StringBuilder).Append(s)
	}
	optStr := func(col int, s string) {
		if s == "" {
			rb.Field(col).AppendNull()
			return
		}
		str(col, s)
	}
	optJSON := func(col int, v []byte) {
		sb := rb.Field(col).(*array.ExtensionBuilder).StorageBuilder().(*array.StringBuilder)
		if len(v) == 0 || string(v) == "null" {
			sb.AppendNull()
			return
		}
		sb.BinaryBuilder.Append(v)
	}
	str(0, e.EventID)
	rb.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(e.Timestamp.UnixMicro()))
	str(2, e.AccountID)
	str(3, e.ResourceID)
	rb.Field(4).(*array.Int64Builder).Append(e.Sequence)
	str(5, e.EventType)
	optStr(6, e.ResourceType)
	optStr(7, e.FlowID)
	optStr(8, e.LeadID)
	optStr(9, e.EntityType)
	optStr(10, e.EntityID)
	optStr(11, e.Outcome)
	if e.DurationMS != nil {
		rb.Field(12).(*array.Int64Builder).Append(*e.DurationMS)
	} else {
		rb.Field(12).AppendNull()
	}
	optJSON(13, e.Metadata)
	optJSON(14, e.LeadData)
	var extra []byte
	if len(e.Extra) > 0 {
		extra = e.Extra.AppendObject(nil)
	}
	optJSON(15, extra)
	meta := rb.Field(16).(*array.StructBuilder)
	meta.Append(true)
	meta.FieldBuilder(0).(*array.StringBuilder).Append(b.ID)
	meta.FieldBuilder(1).(*array.Int64Builder).Append(int64(b.Seq + i))
	meta.FieldBuilder(2).(*array.TimestampBuilder).Append(arrow.Timestamp(b.SealedAt.UnixMicro()))
	appendReplay(meta, b)
	return 64 + len(e.EventID) + len(e.AccountID) + len(e.ResourceID) + len(e.EventType) + len(e.Metadata) + len(e.LeadData) + len(extra)
}

// appendColumns appends e's values of the promoted columns; the worker
// dead-lettered the events whose values do not fit.
func (p *Parquet) appendColumns(rb *array.RecordBuilder, e *schemas.Event) {
	base := len(rb.Fields()) - len(p.columns)
	for i, c := range p.columns {
		fb := rb.Field(base + i)
		v := c.value(e)
		if v.Type == gjson.Null || !c.fits(v) {
			fb.AppendNull()
			continue
		}
		switch c.Type {
		case "string":
			fb.(*array.StringBuilder).Append(v.Str)
		case "long":
			fb.(*array.Int64Builder).Append(v.Int())
		case "double":
			fb.(*array.Float64Builder).Append(v.Float())
		case "boolean":
			fb.(*array.BooleanBuilder).Append(v.Bool())
		}
	}
}

// ContentType implements Encoder.
func (p *Parquet) ContentType() string { return "application/vnd.apache.parquet" }

// Extension implements Encoder.
func (p *Parquet) Extension() string { return ".parquet" }

// appendReplay appends firehose_metadata.replay: the replay job that
// delivered b, or null.
func appendReplay(meta *array.StructBuilder, b *Batch) {
	rb := meta.FieldBuilder(3).(*array.StringBuilder)
	if b.Replay == "" {
		rb.AppendNull()
		return
	}
	rb.Append(b.Replay)
}
