package schemas

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

const base = `"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t"`

// Events that JSON readers would read differently are rejected as invalid,
// naming the field, instead of being passed on with one reading chosen.
func TestDecodeRejectsAmbiguousJSON(t *testing.T) {
	tests := []struct {
		name, in, field, msg string
	}{
		{"duplicate nested leaf", `{` + base + `,"metadata":{"contact":{"phone":"000-000-0000","phone":"412-087-5956"}}}`,
			"metadata.contact.phone", "duplicate key"},
		{"duplicate intermediate object", `{` + base + `,"metadata":{"contact":{"phone":"1"},"contact":{"phone":"2"}}}`,
			"metadata.contact", "duplicate key"},
		{"duplicate top-level key", `{` + base + `,"account_id":"b"}`, "account_id", "duplicate key"},
		{"case variant in lead_data", `{` + base + `,"lead_data":{"ssn":"1","SSN":"123-45-6789"}}`,
			"lead_data.SSN", `differs from key "ssn" only in case`},
		{"case variant of a schema field", `{` + base + `,"Lead_Data":{"ssn":"123-45-6789"}}`,
			"Lead_Data", "differs from a schema field only in case"},
		{"escaped duplicate", `{` + base + `,"lead_data":{"ssn":"1","s\u0073n":"123-45-6789"}}`,
			"lead_data.ssn", "duplicate key"},
		{"Kelvin sign folds to k", `{` + base + `,"metadata":{"kind":"a","` + "\u212a" + `ind":"b"}}`,
			"metadata.\u212aind", "only in case"},
		{"duplicate inside an array element", `{` + base + `,"metadata":{"contacts":[{"phone":"1","phone":"2"}]}}`,
			"metadata.contacts[].phone", "duplicate key"},
		{"invalid UTF-8", `{` + base + `,"metadata":{"name":"bad` + "\xff" + `"}}`, "", "invalid UTF-8 at byte"},
		{"too deep", `{` + base + `,"metadata":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`,
			"metadata.a" + strings.Repeat("[]", MaxDepth-3), "nests deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JSON{}.Decode([]byte(tt.in))
			se, ok := err.(*Error)
			if !ok || se.Class != ClassInvalid {
				t.Fatalf("got %v, want an invalid event", err)
			}
			for _, p := range se.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("problems %+v lack %s: %s", se.Problems, tt.field, tt.msg)
		})
	}
}

// Distinct keys, keys that only look alike, and nesting up to the limit
// stay valid.
func TestDecodeAcceptsDistinctKeysAndDepthAtTheLimit(t *testing.T) {
	for _, in := range []string{
		`{` + base + `,"metadata":{"phone":"1","phone2":"2","contact":{"phone":"3"}},"lead_data":{"phone":"4"}}`,
		`{` + base + `,"metadata":{"a":[{"phone":"1"},{"phone":"2"}]}}`,
		`{` + base + `,"metadata":{"s":"{\"x\":1,\"x\":2}"}}`, // a string that looks like JSON is not parsed
		`{` + base + `,"metadata":{"a":` + strings.Repeat("[", MaxDepth-2) + strings.Repeat("]", MaxDepth-2) + `}}`,
	} {
		if _, err := (JSON{}).Decode([]byte(in)); err != nil {
			t.Errorf("%.80s…: %v", in, err)
		}
	}
}

// A huge object of distinct keys is checked in linear time, and a deep
// document is refused without recursion: both return.
func TestStructureCheckScales(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{` + base + `,"metadata":{`)
	for i := range 50000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(itoa(i))
		b.WriteString(`":1`)
	}
	b.WriteString(`}}`)
	if _, err := (JSON{}).Decode([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	deep := `{` + base + `,"metadata":{"a":` + strings.Repeat("[", 500000) + strings.Repeat("]", 500000) + `}}`
	if _, err := (JSON{}).Decode([]byte(deep)); ClassOf(err) != ClassInvalid {
		t.Fatalf("500,000 levels: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// A value written by a Confluent Schema Registry serializer is refused with
// a message that names the framing and the schema id.
func TestSchemaRegistryFramingIsNamed(t *testing.T) {
	framed := append([]byte{0, 0, 0, 0x01, 0x2c}, `{`+base+`}`...)
	_, err := JSON{}.Decode(framed)
	if ClassOf(err) != ClassDecode || !strings.Contains(Detail(err), "Confluent Schema Registry framing (magic byte 0, schema id 300)") {
		t.Fatalf("%v", err)
	}
}

// grammarCases are texts at the edges of JSON's grammar, valid and not.
var grammarCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `1.5e`, `1e+`, `1E-7`, `-0.0e0`, `.5`, `+1`,
	`true`, `tru`, `truex`, `nul`, `null `, ` false`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a" 1}`, `{"a":}`,
	`{a:1}`, `{"a":1}}`, `[[]`, `[]]`, `{"a":[1,{"b":null}],"c":"d"}`, `"\u00e9\n\/"`, `"\x"`, `"\u12"`,
	`"\u12g4"`, ` [ 1 , "a" , [ ] , { "b" : [ 2 ] } ] `, `{ "a" : { "b" : "}" } , "c\u0041" : -1e5 }`, "\"a\tb\"", "\"\x7f\"", `"ab\"cd\\"`, `"ab\\\"cd"`, `{"":""}`, `1 2`, `{} {}`, "\"\xff\"",
	`["aaaaaaaaaaaaaaaa\"bbbbbbbbbbbbbbbbbbbbb\\","c"]`, "{\"a\"\n:\r\n1\t}",
	"\"aaaaaaaaaaaa\x01aaaaaaaaaaaa\"", "\"aaaaaaaaaaaa\\qaaaaaaaaaaaa\"",
}

// scan accepts exactly the texts encoding/json accepts, and reads the same
// top-level members gjson reads.
func TestScanGrammarMatchesEncodingJSON(t *testing.T) {
	for _, in := range grammarCases {
		checkScan(t, []byte(in))
	}
}

func FuzzScan(f *testing.F) {
	for _, in := range grammarCases {
		f.Add([]byte(in))
	}
	f.Add([]byte(`{` + base + `,"metadata":{"a":[1,2,{"b":"c"}]},"x":-1.5e3,"y":true}`))
	f.Fuzz(checkScan)
}

func checkScan(t *testing.T, data []byte) {
	var got []member
	r := scan(data, "", false, func(m member) { got = append(got, m) })
	if r.tooDeep {
		return
	}
	if r.valid != json.Valid(data) {
		t.Fatalf("%q: scan says valid %v, encoding/json %v", data, r.valid, !r.valid)
	}
	if r.valid && r.root == kindArray {
		var want, got []string
		gjson.ParseBytes(data).ForEach(func(_, v gjson.Result) bool { want = append(want, v.Raw); return true })
		for el := range Elements(data) {
			got = append(got, string(el))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: Elements reads %q, gjson %q", data, got, want)
		}
	}
	if !r.valid || r.root != kindObject {
		return
	}
	var walked []member
	var rawKeys [][]byte
	for m := range Members(data) {
		walked = append(walked, member{key: m.Key, raw: m.Value})
		rawKeys = append(rawKeys, m.RawKey)
		if m.Key != StringValue(m.RawKey) {
			t.Fatalf("%q: key %q, raw %s", data, m.Key, m.RawKey)
		}
	}
	if len(walked) != len(got) {
		t.Fatalf("%q: Members reads %d members, scan %d", data, len(walked), len(got))
	}
	for i := range got {
		if walked[i].key != got[i].key || string(walked[i].raw) != string(got[i].raw) {
			t.Fatalf("%q: Members reads %q: %s, scan %q: %s", data, walked[i].key, walked[i].raw, got[i].key, got[i].raw)
		}
	}
	var want []member
	gjson.ParseBytes(data).ForEach(func(k, v gjson.Result) bool {
		want = append(want, member{key: k.String(), raw: []byte(v.Raw)})
		return true
	})
	if len(got) != len(want) {
		t.Fatalf("%q: %d members, gjson reads %d", data, len(got), len(want))
	}
	for i := range got {
		if !utf8.Valid(rawKeys[i]) {
			// Readers differ on a key that is not UTF-8: gjson keeps
			// its bytes, encoding/json replaces them with U+FFFD, and
			// scan does either (as it reads the key's bytes in place
			// or unquotes its escapes). Strict decoding rejects such
			// text; the lenient DecodeHeader compares keys only with
			// ASCII field names, which neither reading can match.
			var k string
			if err := json.Unmarshal(rawKeys[i], &k); err != nil || (got[i].key != k && got[i].key != want[i].key) {
				t.Fatalf("%q: key %d reads %q, encoding/json %q, gjson %q", data, i, got[i].key, k, want[i].key)
			}
			want[i].key = got[i].key
		}
		if got[i].key != want[i].key || string(got[i].raw) != string(want[i].raw) {
			t.Fatalf("%q: member %d is %q: %s, gjson reads %q: %s", data, i, got[i].key, got[i].raw, want[i].key, want[i].raw)
		}
		if got[i].kind == kindString && utf8.Valid(got[i].raw) {
			var s string
			if err := json.Unmarshal(got[i].raw, &s); err != nil || s != got[i].text() {
				t.Fatalf("%q: member %q reads %q, want %q", data, got[i].key, got[i].text(), s)
			}
		}
	}
}
