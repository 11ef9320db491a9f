package connectors_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/transform"
)

// shapedAvroSteps rename, set typed fields and keep an event's unknown
// fields, so the file has every kind of field.
const shapedAvroSteps = `[{rename: {event_type: type, lead_data.ssn: ssn}}, {set: {cents: "float(metadata?.price ?? 0) * 100", n: "sequence + 1", big: "sequence > 2"}}, {drop: [metadata, lead_id]}]`

// FuzzAvroShaped: any event the decoder accepts, shaped by a transform
// that keeps its unknown fields, comes back from the Avro file with each
// of the shape's fields, typed, and the unknown ones in extra.
func FuzzAvroShaped(f *testing.F) {
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:45.123456Z","account_id":"a","resource_id":"r","sequence":-1,"event_type":"t","duration_ms":0,"metadata":{"price":2.5},"lead_data":{"ssn":"\u0000"},"z":[1,{"a":null}],"é":"ü"}`)
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":3,"event_type":"t","flow_id":null}`)
	tr := compileSteps(f, shapedAvroSteps)
	a, err := connectors.NewShapedAvro("deflate", tr)
	if err != nil {
		f.Fatal(err)
	}
	cols, _ := tr.Shape()
	types := map[string]string{}
	for _, c := range cols {
		types[c.Name] = c.Type
	}
	f.Fuzz(func(t *testing.T, value string) {
		shaped, body, ok := encodeShaped(t, tr, a, value)
		if !ok {
			return
		}
		dec, err := ocf.NewDecoder(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if !dec.HasNext() {
			t.Fatal("no record")
		}
		var got map[string]any
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{}
		var extra []string
		for m := range schemas.Members(shaped) {
			if _, ok := want[m.Key]; ok {
				continue // the first one counts
			}
			want[m.Key] = m.Value
			if _, ok := types[m.Key]; !ok {
				extra = append(extra, string(m.RawKey)+":"+string(m.Value))
			}
		}
		if len(extra) > 0 {
			want["extra"] = []byte("{" + strings.Join(extra, ",") + "}")
			types["extra"] = "json"
		}
		meta := got[connectors.MetadataKey].(map[string]any)
		if meta["batch_id"] != "b1" || meta["sequence"] != int64(7) || meta["replay"] != nil {
			t.Fatalf("firehose_metadata %v", meta)
		}
		for name, typ := range types {
			v, ok := want[name]
			g := got[name]
			if !ok || string(v) == "null" {
				if g != nil {
					t.Fatalf("field %s: %v, the shape has no value", name, g)
				}
				continue
			}
			var wantV any
			switch typ {
			case "string":
				wantV = schemas.StringValue(v)
			case "long":
				wantV, _ = strconv.ParseInt(string(v), 10, 64)
			case "double":
				wantV, _ = strconv.ParseFloat(string(v), 64)
			case "boolean":
				wantV = string(v) == "true"
			case "timestamp":
				ts, _ := time.Parse(time.RFC3339Nano, schemas.StringValue(v))
				if gt, ok := g.(time.Time); !ok || !gt.Equal(ts.Truncate(time.Microsecond)) {
					t.Fatalf("field %s: %v, shaped %s", name, g, v)
				}
				continue
			default:
				wantV = string(v)
			}
			if !reflect.DeepEqual(g, wantV) {
				t.Fatalf("field %s: %#v, shaped %s", name, g, v)
			}
		}
	})
}

// A shaped Avro file read by another implementation, Debian's
// python3-avro: the schema follows the transform (typed fields, JSON text
// for the rest, each nullable) and every event comes back with its values.
func TestShapedAvroReadByPythonAvro(t *testing.T) {
	python := "/usr/bin/python3" // Debian's, beside its python3-avro
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	if err := exec.Command(python, "-c", "import avro.datafile").Run(); err != nil {
		t.Fatal("python3-avro is not installed; make test installs it (apt-get install python3-avro)")
	}
	tr := compileSteps(t, `[{select: [event_id, event_type, sequence, timestamp, metadata.price, lead_data]}, {rename: {event_type: type}}, {set: {cents: "float(metadata.price) * 100", paid: "metadata.price > 20"}}, {drop: [metadata]}]`)
	a, err := connectors.NewShapedAvro("deflate", tr) // Debian's python3-avro lacks snappy
	if err != nil {
		t.Fatal(err)
	}
	b := &connectors.Batch{ID: "b9", Seq: 100, SealedAt: time.Date(2024, 1, 15, 14, 31, 0, 0, time.UTC), Replay: "0000abcd"}
	for i, price := range []string{"25.5", "10", "30"} {
		value := `{"event_id":"e` + strconv.Itoa(i) + `","timestamp":"2024-01-15T14:30:45.123456Z","account_id":"a","resource_id":"r","sequence":` + strconv.Itoa(i+1) +
			`,"event_type":"lead.created","metadata":{"price":` + price + `},"lead_data":{"email":"j***@example.com"}}`
		e, err := schemas.JSON{}.Decode([]byte(value))
		if err != nil {
			t.Fatal(err)
		}
		shaped, err := tr.Apply(nil, e, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Events, b.Shaped = append(b.Events, e), append(b.Shaped, shaped)
	}
	body, err := connectors.EncodeBody(a, connectors.None{}, b)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.avro")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, sys, avro.datafile, avro.io
with open(sys.argv[1], "rb") as f:
    r = avro.datafile.DataFileReader(f, avro.io.DatumReader())
    schema = json.loads(r.schema) if isinstance(r.schema, str) else r.schema.to_json()
    rows = [row for row in r]
print(json.dumps({"fields": [[x["name"], x["type"]] for x in schema["fields"]], "rows": rows}, default=lambda v: v.isoformat()))
`
	out, err := exec.Command(python, "-c", script, file).CombinedOutput()
	if err != nil {
		t.Fatalf("python3-avro: %v\n%s", err, out)
	}
	var got struct {
		Fields [][2]any
		Rows   []map[string]any
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var fields []string
	for _, f := range got.Fields {
		typ, _ := json.Marshal(f[1])
		fields = append(fields, f[0].(string)+" "+string(typ))
	}
	wantFields := []string{
		`event_id ["null","string"]`, `sequence ["null","long"]`,
		`timestamp ["null",{"logicalType":"timestamp-micros","type":"long"}]`, `lead_data ["null","string"]`,
		`type ["null","string"]`, `cents ["null","double"]`, `paid ["null","boolean"]`,
	}
	if len(fields) != len(wantFields)+1 || strings.Join(fields[:len(wantFields)], "\n") != strings.Join(wantFields, "\n") || !strings.HasPrefix(fields[len(wantFields)], "firehose_metadata ") {
		t.Fatalf("fields:\n%s\nwant:\n%s\nfirehose_metadata ...", strings.Join(fields, "\n"), strings.Join(wantFields, "\n"))
	}
	if len(got.Rows) != 3 {
		t.Fatalf("%d rows: %s", len(got.Rows), out)
	}
	for i, r := range got.Rows {
		price := []float64{25.5, 10, 30}[i] // and the timestamp keeps milliseconds, as events do
		meta := r["firehose_metadata"].(map[string]any)
		if r["event_id"] != "e"+strconv.Itoa(i) || r["type"] != "lead.created" || r["sequence"] != float64(i+1) ||
			r["cents"] != price*100 || r["paid"] != (price > 20) || r["lead_data"] != `{"email":"j***@example.com"}` ||
			!strings.HasPrefix(r["timestamp"].(string), "2024-01-15T14:30:45.123") ||
			meta["batch_id"] != "b9" || meta["sequence"] != float64(100+i) || meta["replay"] != "0000abcd" {
			t.Fatalf("row %d: %v", i, r)
		}
	}
}

// A transformed event whose value does not fit its field is refused
// naming the field, as for Parquet.
func TestShapedAvroCheck(t *testing.T) {
	a, err := connectors.NewShapedAvro("null", compileSteps(t, `[{select: [event_id, sequence]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check([]byte(`{"event_id":"e","sequence":"seven"}`)); err == nil || err.Error() != `column sequence: the transform made "seven", not a long` {
		t.Fatalf("got %v", err)
	}
}

// A file connector with encoding avro and a transform writes each event
// once, in the transformed shape, in order per resource, in files whose
// schema follows the transform.
func TestShapedAvroFilesHoldEveryEventOnce(t *testing.T) {
	dir := t.TempDir()
	fc := file.Config{Dir: dir}
	fc.Defaults()
	sink, err := file.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	evs := generator.Unique(5, 30, 1500)
	steps := []transform.Step{
		{Select: []string{"event_id", "resource_id", "sequence", "event_type", "lead_data.email"}},
		{Rename: transform.Pairs{{Key: "event_type", Value: "type"}}},
		{Set: transform.Pairs{{Key: "next", Value: "sequence + 1"}}},
	}
	p := connectortest.StartPipeline(t, sink, evs, connectors.Config{Encoding: "avro", AvroCodec: "deflate", Compression: "none", Transform: steps})
	p.Drained(t)
	got := map[string]map[string]any{}
	last := map[string]int64{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		dec, err := ocf.NewDecoder(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for dec.HasNext() {
			var r map[string]any
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			id := r["event_id"].(string)
			if _, dup := got[id]; dup {
				return fmt.Errorf("event %s twice", id)
			}
			got[id] = r
			res, seq := r["resource_id"].(string), r["sequence"].(int64)
			// A resource's events are in one partition, whose files are
			// named by zero-padded offset: a walk reads them in order.
			if seq <= last[res] {
				return fmt.Errorf("resource %s: sequence %d after %d", res, seq, last[res])
			}
			last[res] = seq
		}
		return dec.Error()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events in the files, %d produced", len(got), len(evs))
	}
	for _, e := range evs {
		r := got[e.EventID]
		var lead struct{ Email any }
		_ = json.Unmarshal(e.LeadData, &lead)
		wantLead := any(nil)
		if lead.Email != nil {
			b, _ := json.Marshal(map[string]any{"email": lead.Email})
			wantLead = string(b)
		}
		if r["type"] != e.EventType || r["next"] != e.Sequence+1 || r["lead_data"] != wantLead || r["firehose_metadata"] == nil {
			t.Fatalf("event %s read as %v", e.EventID, r)
		}
	}
}
