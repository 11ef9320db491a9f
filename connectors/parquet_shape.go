package connectors

import (
	"fmt"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// shapedColumns are the columns of a Parquet file written from a
// transform's output: one per field of its shape, each nullable, then
// (while the transform keeps an event's unknown fields) extra, then
// firehose_metadata.
type shapedColumns struct {
	cols  []transform.Column
	index map[string]int
	open  bool
}

// arrowTypes are the Arrow types of a shape's column types.
func arrowType(typ string) arrow.DataType {
	switch typ {
	case transform.String:
		return arrow.BinaryTypes.String
	case transform.Long:
		return arrow.PrimitiveTypes.Int64
	case transform.Double:
		return arrow.PrimitiveTypes.Float64
	case transform.Boolean:
		return arrow.FixedWidthTypes.Boolean
	case transform.Timestamp:
		return arrow.FixedWidthTypes.Timestamp_us
	}
	return parquetColumns().Field(13).Type // JSON, as metadata's
}

// newShapedColumns returns the columns of transform t's shape, refusing
// a field that takes the name of a column Firehose adds.
func newShapedColumns(t *transform.Transform) (*shapedColumns, error) {
	cols, open := t.Shape()
	s := &shapedColumns{cols: cols, index: make(map[string]int, len(cols)), open: open}
	for i, c := range cols {
		if c.Name == MetadataKey || open && c.Name == "extra" {
			return nil, fmt.Errorf("the transform makes a field %s, the name of the column that holds %s; rename it", c.Name,
				map[bool]string{true: "what Firehose adds", false: "an event's unknown fields"}[c.Name == MetadataKey])
		}
		s.index[c.Name] = i
	}
	return s, nil
}

// NewShapedParquet returns the Parquet encoder of a connector with
// transform t: its columns follow t's shape (Transform.Shape), typed where
// the steps tell the type and JSON otherwise.
func NewShapedParquet(compression string, t *transform.Transform) (*Parquet, error) {
	s, err := newShapedColumns(t)
	if err != nil {
		return nil, err
	}
	p, err := NewParquet(compression)
	if err != nil {
		return nil, err
	}
	var fields []arrow.Field
	for _, c := range s.cols {
		fields = append(fields, arrow.Field{Name: c.Name, Type: arrowType(c.Type), Nullable: true})
	}
	if s.open {
		fields = append(fields, arrow.Field{Name: "extra", Type: arrowType(transform.JSON), Nullable: true})
	}
	all := parquetColumns().Fields()
	fields = append(fields, all[len(all)-1]) // firehose_metadata
	p.schema, p.shaped = arrow.NewSchema(fields, nil), s
	return p, nil
}

// Check reports the first field of a transformed event that does not fit
// its column's type; such an event is dead-lettered before it reaches a
// batch. Only an event can break the shape's types, by a rename of a
// field it lacks onto one of another type, say.
func (p *Parquet) Check(shaped []byte) error {
	if p.shaped == nil {
		return nil
	}
	return p.shaped.check(shaped)
}

func (s *shapedColumns) check(shaped []byte) error {
	for m := range schemas.Members(shaped) {
		j, ok := s.index[m.Key]
		if !ok {
			continue
		}
		if c := s.cols[j]; !fitsColumn(c.Type, m.Value) {
			raw := string(m.Value)
			if len(raw) > 40 {
				raw = raw[:40] + "…"
			}
			return fmt.Errorf("column %s: the transform made %s, not a %s", c.Name, raw, c.Type)
		}
	}
	return nil
}

// row sets vals[j] to the JSON value of column j in transformed event v
// (nil when v lacks it; the first one when v names it twice) and, while
// the shape is open, returns v's other fields as one JSON object (nil for
// none), built in extra's memory.
func (s *shapedColumns) row(vals [][]byte, v, extra []byte) []byte {
	clear(vals)
	extra = extra[:0]
	for m := range schemas.Members(v) {
		j, ok := s.index[m.Key]
		switch {
		case !ok && s.open:
			extra = append(append(append(append(extra, ','), m.RawKey...), ':'), m.Value...)
		case ok && vals[j] == nil:
			vals[j] = m.Value
		}
	}
	if len(extra) == 0 {
		return nil
	}
	extra[0] = '{'
	return append(extra, '}')
}

// fitsColumn reports whether JSON value v can be a value of a column of
// type typ (null always can).
func fitsColumn(typ string, v []byte) bool {
	if string(v) == "null" {
		return true
	}
	switch typ {
	case transform.String:
		return v[0] == '"'
	case transform.Long:
		_, err := strconv.ParseInt(string(v), 10, 64)
		return err == nil
	case transform.Double:
		_, err := strconv.ParseFloat(string(v), 64)
		return err == nil
	case transform.Boolean:
		return string(v) == "true" || string(v) == "false"
	case transform.Timestamp:
		_, err := time.Parse(time.RFC3339Nano, schemas.StringValue(v))
		return v[0] == '"' && err == nil
	}
	return true
}

// shapedRow is the memory shapedColumns.row works in, kept across rows.
type shapedRow struct {
	vals  [][]byte
	extra []byte
}

func (s *shapedColumns) newRow() *shapedRow { return &shapedRow{vals: make([][]byte, len(s.cols))} }

// appendRow appends the i-th transformed event of b to the columns and
// returns about how many bytes it holds. Worker checked its values
// (Check); one that still does not fit is null.
func (s *shapedColumns) appendRow(rb *array.RecordBuilder, b *Batch, i int, r *shapedRow) int {
	v := b.Shaped[i]
	extra := s.row(r.vals, v, r.extra)
	if extra != nil {
		r.extra = extra
	}
	for j, val := range r.vals {
		if val == nil {
			rb.Field(j).AppendNull()
		} else {
			appendValue(rb.Field(j), s.cols[j].Type, val)
		}
	}
	n := len(s.cols)
	if s.open {
		if extra == nil {
			rb.Field(n).AppendNull()
		} else {
			appendValue(rb.Field(n), transform.JSON, extra)
		}
		n++
	}
	meta := rb.Field(n).(*array.StructBuilder)
	meta.Append(true)
	meta.FieldBuilder(0).(*array.StringBuilder).Append(b.ID)
	meta.FieldBuilder(1).(*array.Int64Builder).Append(int64(b.Seq + i))
	meta.FieldBuilder(2).(*array.TimestampBuilder).Append(arrow.Timestamp(b.SealedAt.UnixMicro()))
	appendReplay(meta, b)
	return 64 + len(v)
}

// appendValue appends JSON value v to a column of type typ.
func appendValue(fb array.Builder, typ string, v []byte) {
	if string(v) == "null" || !fitsColumn(typ, v) {
		fb.AppendNull()
		return
	}
	switch typ {
	case transform.String:
		fb.(*array.StringBuilder).Append(schemas.StringValue(v))
	case transform.Long:
		n, _ := strconv.ParseInt(string(v), 10, 64)
		fb.(*array.Int64Builder).Append(n)
	case transform.Double:
		f, _ := strconv.ParseFloat(string(v), 64)
		fb.(*array.Float64Builder).Append(f)
	case transform.Boolean:
		fb.(*array.BooleanBuilder).Append(string(v) == "true")
	case transform.Timestamp:
		t, _ := time.Parse(time.RFC3339Nano, schemas.StringValue(v))
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMicro()))
	default:
		fb.(*array.ExtensionBuilder).StorageBuilder().(*array.StringBuilder).BinaryBuilder.Append(v)
	}
}
