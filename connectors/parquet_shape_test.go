package connectors_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// encodeShaped decodes value, shapes it with tr and encodes it alone in
// a batch (ID b1, Seq 7) with enc, which must find the shape's types hold;
// false when the decoder or the transform refuse value.
func encodeShaped(t *testing.T, tr *transform.Transform, enc interface {
	connectors.Encoder
	Check([]byte) error
}, value string) (shaped, body []byte, ok bool) {
	e, err := schemas.JSON{}.Decode([]byte(value))
	if err != nil {
		return nil, nil, false
	}
	if shaped, err = tr.Apply(nil, e, []byte(value)); err != nil {
		return nil, nil, false // a set that failed: dead-lettered before a batch
	}
	if err := enc.Check(shaped); err != nil {
		t.Fatalf("the shape's types do not hold for %s: %v", shaped, err)
	}
	b := &connectors.Batch{ID: "b1", Seq: 7, Events: []*schemas.Event{e}, Shaped: [][]byte{shaped}, SealedAt: time.Unix(1700000000, 0)}
	if body, err = connectors.EncodeBody(enc, connectors.None{}, b); err != nil {
		t.Fatal(err)
	}
	return shaped, body, true
}

func compileSteps(t testing.TB, doc string) *transform.Transform {
	t.Helper()
	var steps []transform.Step
	if err := yaml.Unmarshal([]byte(doc), &steps); err != nil {
		t.Fatal(err)
	}
	tr, err := transform.Compile(steps)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// FuzzParquetShaped: any event the decoder accepts, shaped by a transform
// that keeps its unknown fields, comes back from the Parquet file with
// each of the shape's fields in its column, typed, and the unknown ones in
// extra.
func FuzzParquetShaped(f *testing.F) {
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:45.123456Z","account_id":"a","resource_id":"r","sequence":-1,"event_type":"t","duration_ms":0,"metadata":{"price":2.5},"lead_data":{"ssn":"\u0000"},"z":[1,{"a":null}],"é":"ü"}`)
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":3,"event_type":"t","flow_id":null}`)
	tr := compileSteps(f, `[{rename: {event_type: type, lead_data.ssn: ssn}}, {set: {cents: "float(metadata?.price ?? 0) * 100", n: "sequence + 1", big: "sequence > 2"}}, {drop: [metadata, lead_id]}]`)
	p, err := connectors.NewShapedParquet("snappy", tr)
	if err != nil {
		f.Fatal(err)
	}
	inShape := map[string]bool{}
	cols, _ := tr.Shape()
	for _, c := range cols {
		inShape[c.Name] = true
	}
	f.Fuzz(func(t *testing.T, value string) {
		shaped, body, ok := encodeShaped(t, tr, p, value)
		if !ok {
			return
		}
		tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(body), nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		want := map[string][]byte{}
		var extra []string
		for m := range schemas.Members(shaped) {
			want[m.Key] = m.Value
			if !inShape[m.Key] {
				extra = append(extra, string(m.RawKey)+":"+string(m.Value))
			}
		}
		if len(extra) > 0 {
			want["extra"] = []byte("{" + strings.Join(extra, ",") + "}")
		}
		for i := 0; i < int(tbl.NumCols())-1; i++ {
			name := tbl.Schema().Field(i).Name
			col := tbl.Column(i).Data().Chunk(0)
			v, ok := want[name]
			if !ok || string(v) == "null" {
				if !col.IsNull(0) {
					t.Fatalf("column %s: %v, the shape has no value", name, col)
				}
				continue
			}
			var got string
			switch a := col.(type) {
			case *array.String:
				if s := schemas.StringValue(v); s != a.Value(0) {
					t.Fatalf("column %s: %q, shaped %s", name, a.Value(0), v)
				}
				continue
			case *array.Int64:
				got = strconv.FormatInt(a.Value(0), 10)
			case *array.Float64:
				f, _ := strconv.ParseFloat(string(v), 64)
				if a.Value(0) != f {
					t.Fatalf("column %s: %v, shaped %s", name, a.Value(0), v)
				}
				continue
			case *array.Boolean:
				got = strconv.FormatBool(a.Value(0))
			case *array.Timestamp:
				ts, _ := time.Parse(time.RFC3339Nano, schemas.StringValue(v))
				if a.Value(0) != arrow.Timestamp(ts.UnixMicro()) {
					t.Fatalf("column %s: %v, shaped %s", name, a.Value(0), v)
				}
				continue
			case array.ExtensionArray:
				got = a.Storage().(*array.String).Value(0)
			case *array.Binary: // JSON text read back without its Arrow type
				got = string(a.Value(0))
			default:
				t.Fatalf("column %s: unexpected %T", name, col)
			}
			if got != string(v) {
				t.Fatalf("column %s: %s, shaped %s", name, got, v)
			}
		}
	})
}

// A transformed event whose value does not fit its column (only an event
// can break what the steps promise) is refused naming the column.
func TestParquetShapedCheck(t *testing.T) {
	p, err := connectors.NewShapedParquet("none", compileSteps(t, `[{select: [event_id, sequence]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check([]byte(`{"event_id":"e","sequence":"seven"}`)); err == nil || err.Error() != `column sequence: the transform made "seven", not a long` {
		t.Fatalf("got %v", err)
	}
	if err := p.Check([]byte(`{"event_id":"e","sequence":7,"other":"x"}`)); err != nil {
		t.Fatal(err)
	}
}
