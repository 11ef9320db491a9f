package transform

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/schemas"
)

const sample = `{"event_id":"e1","timestamp":"2024-01-15T14:30:00Z","account_id":"acc_1","resource_id":"r1","sequence":3,` +
	`"event_type":"lead.created","outcome":"success",` +
	`"metadata":{"buyer_response":{"price":12.5,"status":"ok"},"source":"web"},` +
	`"lead_data":{"email":"j***@example.com","state":"CA"}}`

func steps(t *testing.T, doc string) []Step {
	t.Helper()
	var s []Step
	if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Each step, and the combination, gives exactly this shape.
func TestShapes(t *testing.T) {
	e, err := schemas.JSON{}.Decode([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, steps, want string }{
		{"select keeps the nesting", `[{select: [event_id, metadata.buyer_response.price, lead_data.email, missing.path]}]`,
			`{"event_id":"e1","metadata":{"buyer_response":{"price":12.5}},"lead_data":{"email":"j***@example.com"}}`},
		{"select orders by first naming; a path through a non-object picks nothing", `[{select: [metadata.nope, event_id, metadata.source, lead_data.state.x]}]`,
			`{"metadata":{"source":"web"},"event_id":"e1"}`},
		{"a selected object is kept whole", `[{select: [metadata.source, metadata, event_id]}]`,
			`{"metadata":{"buyer_response":{"price":12.5,"status":"ok"},"source":"web"},"event_id":"e1"}`},
		{"select after another step", `[{rename: {outcome: result}}, {select: [result, metadata.buyer_response.status]}]`,
			`{"result":"success","metadata":{"buyer_response":{"status":"ok"}}}`},
		{"rename a top field", `[{select: [event_id, event_type]}, {rename: {event_type: type}}]`,
			`{"event_id":"e1","type":"lead.created"}`},
		{"rename into a new object, missing ones ignored", `[{select: [event_id, lead_data.state]}, {rename: {lead_data.state: geo.state, nope: x}}]`,
			`{"event_id":"e1","lead_data":{},"geo":{"state":"CA"}}`},
		{"set from the event", `[{select: [event_id]}, {set: {price_cents: "metadata.buyer_response.price * 100", is_ca: "lead_data.state == 'CA'"}}]`,
			`{"event_id":"e1","price_cents":1250,"is_ca":true}`},
		{"set replaces and nests", `[{select: [event_id]}, {set: {event_id: "upper(event_id)", a.b: "sequence + 1"}}]`,
			`{"event_id":"E1","a":{"b":4}}`},
		{"drop", `[{drop: [metadata, lead_data.email, timestamp, nope]}]`,
			`{"event_id":"e1","account_id":"acc_1","resource_id":"r1","sequence":3,"event_type":"lead.created","outcome":"success","lead_data":{"state":"CA"}}`},
		{"the issue's four steps", `[{select: [event_id, event_type, resource_id, sequence, metadata.buyer_response.price, lead_data.email]}, {rename: {event_type: type}}, {set: {price_cents: "metadata.buyer_response.price * 100"}}, {drop: [metadata]}]`,
			`{"event_id":"e1","resource_id":"r1","sequence":3,"lead_data":{"email":"j***@example.com"},"type":"lead.created","price_cents":1250}`},
	} {
		tr, err := Compile(steps(t, tc.steps))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := tr.Apply(nil, e, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// An expression that fails on one event is an error naming the step.
func TestSetErrorNamesTheStep(t *testing.T) {
	e, _ := schemas.JSON{}.Decode([]byte(sample))
	tr, err := Compile(steps(t, `[{set: {x: "metadata.buyer_response.status * 2"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Apply(nil, e, nil); err == nil || !strings.Contains(err.Error(), "transform[0].set.x") {
		t.Fatalf("got %v", err)
	}
}

func TestCompileErrorsNameTheStep(t *testing.T) {
	_, err := Compile(steps(t, `[{select: [a..b]}, {set: {x: "sequence +"}}, {drop: [a], select: [b]}, {}]`))
	for _, want := range []string{
		`[0].select: must be a dotted path such as metadata.price, got "a..b"`,
		`[1].set.x: "sequence +" does not compile`,
		`[2]: a step is one of select, rename, set or drop, got 2 of them`,
		`[3]: a step is one of select, rename, set or drop, got 0 of them`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// fourStepsSrc are the select, rename, set and drop.
func fourStepsSrc(b testing.TB) []Step {
	var s []Step
	if err := yaml.Unmarshal([]byte(`[{select: [event_id, event_type, resource_id, sequence, metadata.buyer_response.price, lead_data.email]}, {rename: {event_type: type}}, {set: {price_cents: "metadata.buyer_response.price * 100"}}, {drop: [metadata]}]`), &s); err != nil {
		b.Fatal(err)
	}
	return s
}

// fourSteps compiles fourStepsSrc.
func fourSteps(b testing.TB) *Transform {
	tr, err := Compile(fourStepsSrc(b))
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkFourSteps: the four steps on one processed event of
// about 400 bytes; FromValue given the record value it was decoded from,
// as a connector on a JSON events topic does.
func BenchmarkFourSteps(b *testing.B) {
	e, _ := schemas.JSON{}.Decode([]byte(sample))
	tr := fourSteps(b)
	// A yardstick in the same run, as this machine's speed varies:
	// decoding the same event from its JSON.
	b.Run("DecodeForScale", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (schemas.JSON{}).Decode([]byte(sample)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name string
		src  []byte
	}{{"Encoded", nil}, {"FromValue", []byte(sample)}} {
		b.Run(c.name, func(b *testing.B) {
			var buf []byte
			var err error
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = tr.Apply(buf[:0], e, c.src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Shaping an event from the record value it was decoded from gives what
// shaping its encoding gives, and a transform that starts with a select,
// which encodes only the fields it reads, gives that too: the same JSON,
// on one line, for any value the decoder accepts (white space, escapes,
// repeated or unknown fields).
func FuzzApplyFromValue(f *testing.F) {
	f.Add(sample)
	f.Add(`{"event_id":"e\u0031","timestamp":"2024-01-15T14:30:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t",` +
		"\n" + `"metadata":{"buyer_response":{"price":1e2}, "x":[1,{"y":null}]},"lead_data":{"email":"a\"b"},"campaign":{"k":"v"}}`)
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","event_id":"f","metadata":{"buyer_response":5}}`)
	var open []Step
	if err := yaml.Unmarshal([]byte(`[{rename: {event_type: type, campaign.k: k}}, {drop: [metadata.x, timestamp]}, {set: {p: "metadata.buyer_response.price ?? 0"}}]`), &open); err != nil {
		f.Fatal(err)
	}
	openTr, err := Compile(open)
	if err != nil {
		f.Fatal(err)
	}
	selectTr := fourSteps(f)
	// The same after a step that does nothing (event_id is a string),
	// so that the select is not first: the whole event is parsed.
	parsing, err := Compile(append([]Step{{Drop: []string{"event_id.none"}}}, fourStepsSrc(f)...))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		e, err := schemas.JSON{}.Decode([]byte(value))
		if err != nil {
			return
		}
		for _, tr := range []*Transform{openTr, parsing} {
			fromValue, verr := tr.Apply(nil, e, []byte(value))
			encoded, eerr := tr.Apply(nil, e, nil)
			if (verr != nil) != (eerr != nil) {
				t.Fatalf("from the value: %v; from the encoding: %v", verr, eerr)
			}
			if verr != nil {
				continue
			}
			sameJSON(t, "from the value", fromValue, "from the encoding", encoded)
			if tr == parsing {
				selected, err := selectTr.Apply(nil, e, []byte(value))
				if err != nil {
					t.Fatalf("reading the selected fields: %v; the whole event: no error", err)
				}
				sameJSON(t, "reading the selected fields", selected, "the whole event", fromValue)
			}
		}
	})
}

// sameJSON fails unless a and b are each one line of JSON with the same
// meaning.
func sameJSON(t *testing.T, aName string, a []byte, bName string, b []byte) {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil || bytes.ContainsAny(a, "\r\n") {
		t.Fatalf("%s, not one line of JSON: %s", aName, a)
	}
	if err := json.Unmarshal(b, &y); err != nil || bytes.ContainsAny(b, "\r\n") {
		t.Fatalf("%s, not one line of JSON: %s", bName, b)
	}
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("%s %s\n%s %s", aName, a, bName, b)
	}
}

// A number a set computes is written as encoding/json writes it.
func FuzzAppendValue(f *testing.F) {
	for _, x := range []float64{0, math.Copysign(0, -1), 1250, -3, 12.5, 1e15, 1e21, 123456789012345, 1e-7, 0.1} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		want, werr := json.Marshal(x)
		got, gerr := appendValue(nil, x)
		if (werr != nil) != (gerr != nil) || werr == nil && string(got) != string(want) {
			t.Fatalf("appendValue(%v) = %s, %v; encoding/json: %s, %v", x, got, gerr, want, werr)
		}
	})
}
