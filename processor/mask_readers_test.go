package processor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// readerRules are the default rules plus nested ones, so that paths of one,
// two and three keys are covered.
var readerRules = []MaskRule{
	{Path: "metadata.contact.phone", Strategy: "phone_area"},
	{Path: "metadata.contact.email", Strategy: "email"},
	{Path: "metadata.card", Strategy: "last4"},
	{Path: "metadata.ip", Strategy: "drop"},
}

func maskPipeline(t testing.TB) (*Pipeline, *Masker) {
	m := masker(t, MaskConfig{Rules: readerRules})
	return &Pipeline{
		In: schemas.JSON{}, Out: schemas.JSON{}, EventsTopic: "events", DLQTopic: "dlq",
		MaxEventBytes: 1 << 20, Stages: []Stage{m}, Now: time.Now,
	}, m
}

func rawEvent(lead, meta string) []byte {
	return []byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","lead_data":` + lead + `,"metadata":` + meta + `}`)
}

// maskedPaths lists every rule path in force, split into keys.
func maskedPaths(m *Masker) [][]string {
	var out [][]string
	var walk func(n *maskNode, prefix []string)
	walk = func(n *maskNode, prefix []string) {
		if n.strategy != "" {
			out = append(out, prefix)
		}
		for _, c := range n.children {
			walk(c.node, append(append([]string{}, prefix...), c.folded))
		}
	}
	walk(&m.root, nil)
	return out
}

// everyValueAt collects the scalars at path in raw JSON as any reader could
// see them: every copy of a duplicated key, keys matched ignoring case,
// every element of every array on the way, and everything inside an
// object or array found at the end.
func everyValueAt(v gjson.Result, path []string, out *[]string) {
	switch {
	case v.IsArray():
		for _, el := range v.Array() {
			everyValueAt(el, path, out)
		}
	case len(path) == 0 && v.IsObject():
		v.ForEach(func(_, val gjson.Result) bool { everyValueAt(val, nil, out); return true })
	case len(path) == 0:
		if v.Type == gjson.String {
			*out = append(*out, v.Str)
		} else if v.Type == gjson.Number {
			*out = append(*out, v.Raw)
		}
	case v.IsObject():
		v.ForEach(func(k, val gjson.Result) bool {
			if strings.EqualFold(k.Str, path[0]) {
				everyValueAt(val, path[1:], out)
			}
			return true
		})
	}
}

// goValuesAt walks a value decoded by encoding/json (or firstWins), matching
// keys exactly or ignoring case.
func goValuesAt(v any, path []string, fold bool, out *[]string) {
	switch x := v.(type) {
	case []any:
		for _, el := range x {
			goValuesAt(el, path, fold, out)
		}
	case map[string]any:
		if len(path) == 0 {
			for _, val := range x {
				goValuesAt(val, nil, fold, out)
			}
			return
		}
		for k, val := range x {
			if k == path[0] || fold && strings.EqualFold(k, path[0]) {
				goValuesAt(val, path[1:], fold, out)
			}
		}
	case string:
		if len(path) == 0 {
			*out = append(*out, x)
		}
	case json.Number:
		if len(path) == 0 {
			*out = append(*out, x.String())
		}
	}
}

// firstWins decodes JSON keeping the first copy of a duplicated key, as
// some readers do (encoding/json keeps the last).
func firstWins(v gjson.Result) any {
	switch {
	case v.IsObject():
		m := map[string]any{}
		v.ForEach(func(k, val gjson.Result) bool {
			if _, ok := m[k.Str]; !ok {
				m[k.Str] = firstWins(val)
			}
			return true
		})
		return m
	case v.IsArray():
		var a []any
		for _, el := range v.Array() {
			a = append(a, firstWins(el))
		}
		return a
	case v.Type == gjson.String:
		return v.Str
	case v.Type == gjson.Number:
		return json.Number(v.Raw)
	}
	return nil
}

// structReader is how a Go service would read the output: encoding/json
// into a struct, which matches keys ignoring case and keeps the last copy.
type structReader struct {
	LeadData struct {
		SSN       any `json:"ssn"`
		Email     any `json:"email"`
		Phone     any `json:"phone"`
		FirstName any `json:"first_name"`
		LastName  any `json:"last_name"`
	} `json:"lead_data"`
	Metadata struct {
		Contact any `json:"contact"`
		Card    any `json:"card"`
		IP      any `json:"ip"`
	} `json:"metadata"`
}

// readersSee returns what four readers see at path in out: encoding/json
// into a map (last copy wins) with keys matched exactly and ignoring case,
// a first-copy-wins reader ignoring case, and encoding/json into a struct.
func readersSee(t *testing.T, out []byte, path []string) []string {
	var seen []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	goValuesAt(m, path, false, &seen)
	goValuesAt(m, path, true, &seen)
	goValuesAt(firstWins(gjson.ParseBytes(out)), path, true, &seen)
	var s structReader
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("output does not decode into a struct: %v\n%s", err, out)
	}
	// Round-trip the struct through a map so the same walk reads it.
	b, _ := json.Marshal(s)
	var sm map[string]any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	_ = d.Decode(&sm)
	goValuesAt(sm, path, false, &seen)
	return seen
}

// checkNoSecretSurvives runs one raw event through the masking pipeline and
// fails if any reader of the output finds, at a masked path, a value of the
// input at that path that masking would have changed. It returns the
// outcome.
func checkNoSecretSurvives(t *testing.T, p *Pipeline, m *Masker, raw []byte) (*kgo.Record, Outcome) {
	t.Helper()
	rec, outcome := p.Process(&kgo.Record{Key: []byte("r"), Value: raw})
	if outcome != Emitted {
		return rec, outcome
	}
	in := gjson.ParseBytes(raw)
	for _, path := range maskedPaths(m) {
		var secrets []string
		everyValueAt(in, path, &secrets)
		if len(secrets) == 0 {
			continue
		}
		secret := map[string]bool{}
		for _, s := range secrets {
			if len(s) >= 5 && !isOwnMask(s) {
				secret[s] = true
			}
		}
		for _, v := range readersSee(t, rec.Value, path) {
			if secret[v] {
				t.Fatalf("%s still readable at %s in\n%s\nfrom\n%s", v, strings.Join(path, "."), rec.Value, raw)
			}
		}
	}
	return rec, outcome
}

// isOwnMask reports whether some strategy leaves s as it is (it is already
// masked, like ***-**-6789), so finding it in the output proves no leak.
func isOwnMask(s string) bool {
	return MaskLast4(s) == s || MaskEmail(s) == s || MaskPhoneArea(s) == s || MaskInitial(s) == s || s == "***"
}

// The bypasses a review found: each is now either masked or dead-lettered
// as invalid, and no reader of the output finds the original value.
func TestMaskingHoldsForEveryReader(t *testing.T) {
	p, m := maskPipeline(t)
	tests := []struct {
		name, lead, meta string
		dead             bool
	}{
		{"duplicate leaf, last copy real", `{}`, `{"contact":{"phone":"000-000-0000","phone":"412-087-5956"}}`, true},
		{"duplicate intermediate object", `{}`, `{"contact":{"phone":"000-000-0000"},"contact":{"phone":"412-087-5956"}}`, true},
		{"path through an array", `{}`, `{"contact":[{"phone":"412-087-5956"},{"email":"jane@example.com"}]}`, false},
		{"arrays of arrays", `{}`, `{"contact":[[{"phone":"412-087-5956"}]]}`, false},
		{"leaf array", `{"phone":["412-087-5956","312-555-0101"]}`, `{}`, false},
		{"upper-case keys", `{"SSN":"123-45-6789","Email":"jane@example.com"}`, `{"Contact":{"PHONE":"412-087-5956"}}`, false},
		{"escaped key", `{"s\u0073n":"123-45-6789"}`, `{}`, false},
		{"case variants side by side", `{"ssn":"111-11-1111","SSN":"123-45-6789"}`, `{}`, true},
		{"dropped field in an array", `{}`, `{"ip":"10.1.2.3","x":[{"ip":"10.9.9.9"}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, outcome := checkNoSecretSurvives(t, p, m, rawEvent(tt.lead, tt.meta))
			if tt.dead {
				if outcome != DeadLettered || dlq.Header(rec, dlq.HeaderClass) != schemas.ClassInvalid {
					t.Fatalf("outcome %v, want a dead letter of class invalid", outcome)
				}
				return
			}
			if outcome != Emitted {
				t.Fatalf("outcome %v (%s)", outcome, dlq.Header(rec, dlq.HeaderMessage))
			}
			for _, secret := range []string{"412-087-5956", "312-555-0101", "123-45-6789", "jane@example.com", "10.1.2.3"} {
				if strings.Contains(string(rec.Value), secret) {
					t.Fatalf("%s survives in %s", secret, rec.Value)
				}
			}
		})
	}
	// A whole "Lead_Data" object would be read into lead_data by Go's
	// encoding/json, past the rules: it is refused.
	rec, outcome := p.Process(&kgo.Record{Key: []byte("r"), Value: []byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","Lead_Data":{"ssn":"123-45-6789"}}`)})
	if outcome != DeadLettered || dlq.Header(rec, dlq.HeaderClass) != schemas.ClassInvalid {
		t.Fatalf("Lead_Data: outcome %v", outcome)
	}
}

// FuzzMaskingHoldsForEveryReader: whatever lead_data and metadata hold, no
// value at a masked path survives for a last-wins, a first-wins, a
// case-sensitive or a case-insensitive reader, or a Go struct.
func FuzzMaskingHoldsForEveryReader(f *testing.F) {
	f.Add(`{"ssn":"123-45-6789","email":"jane@example.com"}`, `{"contact":{"phone":"000-000-0000","phone":"412-087-5956"}}`)
	f.Add(`{"SSN":"123-45-6789","Phone":[4120875956,"412-087-5956"]}`, `{"contact":[{"phone":"412-087-5956"}],"card":"4111111111111111"}`)
	f.Add(`{"first_name":"Jane","last_name":{"x":"Doe-Smith"}}`, `{"Contact":{"Email":"jane@example.com"},"ip":"10.1.2.3"}`)
	f.Add(`{"ssn":"1","s\u0073n":"123-45-6789"}`, `{}`)
	p, m := maskPipeline(f)
	f.Fuzz(func(t *testing.T, lead, meta string) {
		checkNoSecretSurvives(t, p, m, rawEvent(lead, meta))
	})
}
