package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sample = `{"event_id":"evt_1","timestamp":"2024-01-15T14:30:45.234Z","account_id":"acc_1",
 "flow_id":"flow_1","lead_id":"lead_1","resource_id":"lead_1","sequence":42,
 "event_type":"recipient.delivered","entity_type":"buyer","entity_id":"ent_1",
 "outcome":"success","duration_ms":342,"metadata":{"price": 25.5, "tags":["a","b"]},
 "lead_data":{"email":"jane@example.com","state":"CA"},"custom_field":{"x":1},"z_last":"kept"}`

func TestJSONDecodeKeepsEveryField(t *testing.T) {
	e, err := JSON{}.Decode([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if e.EventID != "evt_1" || e.Sequence != 42 || e.ResourceID != "lead_1" || *e.DurationMS != 342 {
		t.Fatalf("decoded wrong: %+v", e)
	}
	if got := e.Timestamp.Format(TimestampLayout); got != "2024-01-15T14:30:45.234Z" {
		t.Fatalf("timestamp %s", got)
	}
	if string(e.Metadata) != `{"price":25.5,"tags":["a","b"]}` {
		t.Fatalf("metadata not compacted verbatim: %s", e.Metadata)
	}
	if string(e.Extra.Get("custom_field")) != `{"x":1}` || string(e.Extra.Get("z_last")) != `"kept"` {
		t.Fatalf("unknown fields dropped: %v", e.Extra)
	}
}

func TestJSONRoundTripIsStable(t *testing.T) {
	e, err := JSON{}.Decode([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := JSON{}.Append(nil, e)
	if !json.Valid(b1) {
		t.Fatalf("invalid JSON: %s", b1)
	}
	e2, err := JSON{}.Decode(b1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, e2) {
		t.Fatalf("round trip changed the event:\n%+v\n%+v", e, e2)
	}
	b2, _ := JSON{}.Append(nil, e2)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
	}
	// Same meaning as the input, field for field.
	var in, out map[string]any
	_ = json.Unmarshal([]byte(sample), &in)
	_ = json.Unmarshal(b1, &out)
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("encoded event differs from input:\n%v\n%v", in, out)
	}
}

func TestJSONDecodeReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name, in, class string
		want            []string
	}{
		{"not json", `{"event_id":`, ClassDecode, nil},
		{"array", `[1,2]`, ClassDecode, nil},
		{"null", `null`, ClassDecode, nil},
		{"empty object", `{}`, ClassInvalid, []string{"event_id", "timestamp", "account_id", "resource_id", "sequence", "event_type"}},
		{"wrong types", `{"event_id":1,"timestamp":"yesterday","account_id":"a","resource_id":"r","sequence":"7","event_type":"x","metadata":[1],"duration_ms":1.5}`,
			ClassInvalid, []string{"event_id", "timestamp", "sequence", "duration_ms", "metadata"}},
		{"negative sequence", `{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":-1,"event_type":"x"}`,
			ClassInvalid, []string{"sequence"}},
		{"sequence overflow", `{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":99999999999999999999,"event_type":"x"}`,
			ClassInvalid, []string{"sequence"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JSON{}.Decode([]byte(tt.in))
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("want *Error, got %v", err)
			}
			if se.Class != tt.class {
				t.Fatalf("class %q, want %q (%v)", se.Class, tt.class, err)
			}
			if tt.want == nil {
				return
			}
			var got []string
			for _, p := range se.Problems {
				got = append(got, p.Field)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("problems on %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

// Every string encodes to a JSON string that reads back as itself, each
// byte that is not UTF-8 replaced by U+FFFD.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"plain", `quo"te`, `back\slash`, "nl\n\t\r", "\x00\x1f\x7f", "ünï©ødé 🎉", "bad\xffutf8", "\xe2\x82", "</script>", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString([]byte("x"), s)
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil || b[0] != 'x' {
			t.Fatalf("%q encoded to invalid JSON %s: %v", s, b, err)
		}
		var want strings.Builder
		for _, r := range s {
			want.WriteRune(r) // utf8.RuneError for each byte that is not UTF-8
		}
		if got != want.String() {
			t.Fatalf("%q came back as %q", want.String(), got)
		}
	})
}

func TestAvroRoundTripMatchesJSON(t *testing.T) {
	e, err := JSON{}.Decode([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Avro{}.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xC3 || b[1] != 0x01 {
		t.Fatalf("not single-object encoded: % x", b[:10])
	}
	e2, err := Avro{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, e2) {
		t.Fatalf("avro round trip changed the event:\n%+v\n%+v", e, e2)
	}
	if _, err := (Avro{}).Decode([]byte(sample)); ClassOf(err) != ClassDecode {
		t.Fatalf("JSON bytes through the Avro decoder: %v", err)
	}
}

func FuzzJSONDecode(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"x","k":[{"a":null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := JSON{}.Decode(data)
		if err != nil {
			if ClassOf(err) == "" {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		out, _ := JSON{}.Append(nil, e)
		if !json.Valid(out) {
			t.Fatalf("decoded event re-encodes to invalid JSON: %s", out)
		}
		e2, err := JSON{}.Decode(out)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, e2)
		}
		checkAppendField(t, e, out)
	})
}

// checkAppendField: AppendField gives each field as the encoding out has
// it, and no field out lacks.
func checkAppendField(t *testing.T, e *Event, out []byte) {
	t.Helper()
	written := map[string]bool{}
	for m := range Members(out) {
		written[m.Key] = true
		if got, ok := AppendField(nil, e, m.Key); !ok || !bytes.Equal(got, m.Value) {
			t.Fatalf("AppendField(%q) = %s, %v; the encoding has %s", m.Key, got, ok, m.Value)
		}
	}
	for _, name := range []string{"event_id", "timestamp", "account_id", "resource_id", "sequence", "event_type", "resource_type",
		"flow_id", "lead_id", "entity_type", "entity_id", "outcome", "duration_ms", "metadata", "lead_data", "nope"} {
		if got, ok := AppendField(nil, e, name); ok != written[name] {
			t.Fatalf("AppendField(%q) = %s, %v; the encoding has it: %v", name, got, ok, written[name])
		}
	}
}

func TestAppendFieldIsTheEncodedValue(t *testing.T) {
	for _, src := range []string{sample, `{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"x"}`} {
		e, err := JSON{}.Decode([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := JSON{}.Append(nil, e)
		checkAppendField(t, e, out)
	}
}

func FuzzAvroDecode(f *testing.F) {
	e, _ := JSON{}.Decode([]byte(sample))
	b, _ := Avro{}.Append(nil, e)
	f.Add(b)
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Avro{}.Decode(data)
		if err != nil {
			if ClassOf(err) == "" {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		if _, err := (Avro{}).Append(nil, e); err != nil {
			t.Fatalf("decoded event does not re-encode: %v", err)
		}
	})
}

// AppendTimestamp writes what TimestampLayout does, for any instant and
// zone, including years it cannot write in four digits.
func FuzzAppendTimestamp(f *testing.F) {
	f.Add(int64(1705329045), int64(234567891), 0)
	f.Add(int64(-62135596801), int64(999999999), 3600)
	f.Add(int64(253402300800), int64(0), -7200)
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		ts := time.Unix(sec, nsec%1e9).In(time.FixedZone("z", offset%86400))
		if got, want := string(AppendTimestamp([]byte("x"), ts)), "x"+ts.UTC().Format(TimestampLayout); got != want {
			t.Fatalf("%v: %s, want %s", ts, got, want)
		}
	})
}

func TestAppendTimestamp(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2024, 1, 15, 14, 30, 45, 234567891, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 1, 0, 0, 0, 5e6, time.UTC),
		{},
	} {
		if got, want := string(AppendTimestamp(nil, ts)), ts.UTC().Format(TimestampLayout); got != want {
			t.Errorf("%v: %s, want %s", ts, got, want)
		}
	}
}

// An event's unknown fields encode sorted by name however they arrived or
// were set, so the same event always has the same bytes.
func TestExtraFieldsEncodeSortedByName(t *testing.T) {
	e, err := JSON{}.Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45.234Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","zeta":1,"alpha":{"b":2},"mid":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range e.Extra {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "alpha mid zeta" {
		t.Fatalf("decoded fields %q, want them sorted by name", names)
	}
	const tail = `"alpha":{"b":2},"enrichment":{"x":1},"mid":"m","zeta":1}`
	e.Extra.Set("enrichment", []byte(`{"x":0}`))
	e.Extra.Set("enrichment", []byte(`{"x":1}`)) // replaces
	e.Extra.Set("mid", []byte(`"m"`))            // replaces a decoded one
	b, _ := JSON{}.Append(nil, e)
	if !strings.HasSuffix(string(b), `"event_type":"t",`+tail) {
		t.Fatalf("encoded %s, want it to end %s", b, tail)
	}
	// Built by hand, out of order: encoded sorted all the same.
	e.Extra = Fields{{"zeta", []byte("1")}, {"mid", []byte(`"m"`)}, {"enrichment", []byte(`{"x":1}`)}, {"alpha", []byte(`{"b":2}`)}}
	if b2, _ := (JSON{}).Append(nil, e); string(b2) != string(b) {
		t.Fatalf("hand-built fields encoded %s, want %s", b2, b)
	}
	if got := MakeFields(Field{"b", []byte("1")}, Field{"a", []byte("2")}, Field{"b", []byte("3")}); len(got) != 2 || got[0].Name != "a" || string(got.Get("b")) != "3" {
		t.Fatalf("MakeFields kept %v, want a then the last b", got)
	}
	for _, name := range []string{"zeta", "mid", "enrichment", "alpha"} {
		e.Extra.Delete(name)
	}
	if e.Extra != nil || e.Extra.Get("mid") != nil {
		t.Fatalf("deleting every field left %v", e.Extra)
	}
}
