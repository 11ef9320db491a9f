package transform

import (
	"bytes"
	"encoding/json"
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

// fourSteps compiles the select, rename, set and drop.
func fourSteps(b testing.TB) *Transform {
	var s []Step
	if err := yaml.Unmarshal([]byte(`[{select: [event_id, event_type, resource_id, sequence, metadata.buyer_response.price, lead_data.email]}, {rename: {event_type: type}}, {set: {price_cents: "metadata.buyer_response.price * 100"}}, {drop: [metadata]}]`), &s); err != nil {
		b.Fatal(err)
	}
	tr, err := Compile(s)
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
// shaping its encoding gives: the same JSON, for any value the decoder
// accepts (white space, escapes, repeated or unknown fields).
func FuzzApplyFromValue(f *testing.F) {
	f.Add(sample)
	f.Add(`{"event_id":"e\u0031","timestamp":"2024-01-15T14:30:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t",` +
		"\n" + `"metadata":{"buyer_response":{"price":1e2}, "x":[1,{"y":null}]},"lead_data":{"email":"a\"b"},"campaign":{"k":"v"}}`)
	f.Add(`{"event_id":"e","timestamp":"2024-01-15T14:30:00Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","event_id":"f","metadata":{"buyer_response":5}}`)
	tr := fourSteps(f)
	f.Fuzz(func(t *testing.T, value string) {
		e, err := schemas.JSON{}.Decode([]byte(value))
		if err != nil {
			return
		}
		fromValue, verr := tr.Apply(nil, e, []byte(value))
		encoded, eerr := tr.Apply(nil, e, nil)
		if (verr != nil) != (eerr != nil) {
			t.Fatalf("from the value: %v; from the encoding: %v", verr, eerr)
		}
		if verr != nil {
			return
		}
		var a, b any
		if err := json.Unmarshal(fromValue, &a); err != nil || bytes.ContainsAny(fromValue, "\r\n") {
			t.Fatalf("from the value, not one line of JSON: %s", fromValue)
		}
		if err := json.Unmarshal(encoded, &b); err != nil {
			t.Fatalf("from the encoding, not JSON: %s", encoded)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("from the value %s\nfrom the encoding %s", fromValue, encoded)
		}
	})
}
