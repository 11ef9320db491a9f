package connectors

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// ShapedAvro writes a connector's transformed events as one Avro object
// container file whose schema follows the transform's shape, as a shaped
// Parquet file's columns do: a nullable field per field the steps make,
// typed where the steps tell the type and JSON text otherwise, then (while
// the transform keeps an event's unknown fields) extra, then
// firehose_metadata.
type ShapedAvro struct {
	cols   *shapedColumns
	schema avro.Schema
	codec  ocf.CodecName
}

// avroName is what Avro allows as a field name.
var avroName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// avroType is the Avro type of a shape's column type, without its null.
func avroType(typ string) any {
	switch typ {
	case transform.String:
		return "string"
	case transform.Long:
		return "long"
	case transform.Double:
		return "double"
	case transform.Boolean:
		return "boolean"
	case transform.Timestamp:
		return map[string]any{"type": "long", "logicalType": "timestamp-micros"}
	}
	return "string" // JSON text, as the event schema's metadata
}

// NewShapedAvro returns the Avro encoder of a connector with transform t
// whose blocks the named codec compresses.
func NewShapedAvro(blockCodec string, t *transform.Transform) (*ShapedAvro, error) {
	s, err := newShapedColumns(t)
	if err != nil {
		return nil, err
	}
	codec, err := ocfCodec(blockCodec)
	if err != nil {
		return nil, err
	}
	var fields []any
	field := func(name, typ string) {
		f := map[string]any{"name": name, "type": []any{"null", avroType(typ)}, "default": nil}
		if typ == transform.JSON {
			f["doc"] = "JSON text"
		}
		fields = append(fields, f)
	}
	for _, c := range s.cols {
		if !avroName.MatchString(c.Name) {
			return nil, fmt.Errorf("the transform makes a field %q, which Avro cannot name (letters, digits and _, not first a digit); rename it", c.Name)
		}
		field(c.Name, c.Type)
	}
	if s.open {
		field("extra", transform.JSON)
	}
	fields = append(fields, metadataAvroField())
	text, err := json.Marshal(map[string]any{
		"type": "record", "name": "ShapedEvent", "namespace": "io.firehose",
		"doc":    "A Firehose event as a connector's transform shaped it.",
		"fields": fields,
	})
	if err != nil {
		return nil, err
	}
	schema, err := avro.Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("avro schema of the transform: %w", err)
	}
	return &ShapedAvro{cols: s, schema: schema, codec: codec}, nil
}

// Schema is the files' Avro schema.
func (a *ShapedAvro) Schema() avro.Schema { return a.schema }

// Check reports the first field of a transformed event that does not fit
// its field's type, as Parquet.Check does.
func (a *ShapedAvro) Check(shaped []byte) error { return a.cols.check(shaped) }

// Encode implements Encoder: a block per run of the batch.
func (a *ShapedAvro) Encode(wr io.Writer, b *Batch) error {
	row := a.cols.newRow()
	rec := avro.NewWriter(nil, 512)
	return writeOCF(wr, a.schema, a.codec, b, func(w *ocf.Encoder, run *Batch) error {
		for i, v := range run.Shaped {
			extra := a.cols.row(row.vals, v, row.extra)
			if extra != nil {
				row.extra = extra
			}
			rec.Reset(nil)
			for j, val := range row.vals {
				writeAvroValue(rec, a.cols.cols[j].Type, val)
			}
			if a.cols.open {
				writeAvroValue(rec, transform.JSON, extra)
			}
			rec.WriteString(run.ID)
			rec.WriteLong(int64(run.Seq + i))
			rec.WriteLong(run.SealedAt.UnixMilli())
			if run.Replay == "" {
				rec.WriteLong(0)
			} else {
				rec.WriteLong(1)
				rec.WriteString(run.Replay)
			}
			if rec.Error != nil {
				return fmt.Errorf("avro: %w", rec.Error)
			}
			if _, err := w.Write(rec.Buffer()); err != nil {
				return fmt.Errorf("avro: %w", err)
			}
		}
		return nil
	})
}

// writeAvroValue writes JSON value v (nil: missing) as a ["null", type]
// union. Worker checked the values (Check); one that still does not fit
// is null.
func writeAvroValue(w *avro.Writer, typ string, v []byte) {
	if v == nil || string(v) == "null" || !fitsColumn(typ, v) {
		w.WriteLong(0)
		return
	}
	w.WriteLong(1)
	switch typ {
	case transform.String:
		w.WriteString(schemas.StringValue(v))
	case transform.Long:
		n, _ := strconv.ParseInt(string(v), 10, 64)
		w.WriteLong(n)
	case transform.Double:
		f, _ := strconv.ParseFloat(string(v), 64)
		w.WriteDouble(f)
	case transform.Boolean:
		w.WriteBool(string(v) == "true")
	case transform.Timestamp:
		t, _ := time.Parse(time.RFC3339Nano, schemas.StringValue(v))
		w.WriteLong(t.UnixMicro())
	default:
		w.WriteBytes(v) // JSON text, as a string
	}
}

// ContentType implements Encoder.
func (a *ShapedAvro) ContentType() string { return "application/avro" }

// Extension implements Encoder.
func (a *ShapedAvro) Extension() string { return ".avro" }
