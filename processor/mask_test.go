package processor

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/firehose/firehose/schemas"
)

func TestMaskStrategies(t *testing.T) {
	tests := []struct {
		fn       func(string) string
		in, want string
	}{
		{MaskLast4, "123-45-6789", "***-**-6789"},
		{MaskLast4, "123456789", "*****6789"},
		{MaskLast4, "1234", "****"},
		{MaskLast4, "", ""},
		{MaskEmail, "jane@example.com", "j***@example.com"},
		{MaskEmail, "émile.zola@mail.fr", "é***@mail.fr"},
		{MaskEmail, "no-at-sign", "***"},
		{MaskEmail, "@example.com", "***"},
		{MaskPhoneArea, "412-087-5956", "412-***-****"},
		{MaskPhoneArea, "(412) 087-5956", "(412) ***-****"},
		{MaskPhoneArea, "+1 412 087 5956", "+1 412 *** ****"},
		{MaskPhoneArea, "4120875956", "412*******"},
		{MaskPhoneArea, "5956", "****"},
		{MaskInitial, "Jane", "J"},
		{MaskInitial, "  Øyvind ", "Ø"},
		{MaskInitial, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := tt.fn(tt.in); got != tt.want {
				t.Errorf("%q -> %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func masker(t testing.TB, c MaskConfig) *Masker {
	t.Helper()
	m, err := NewMasker(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMaskerDefaultsAndRules(t *testing.T) {
	e, err := schemas.JSON{}.Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t",
	 "lead_data":{"ssn":"123-45-6789","email":"jane@example.com","phone":4120875956,"first_name":"Jane","last_name":{"odd":"Doe"},"state":"CA"},
	 "metadata":{"contact":{"email":"bob@corp.io","ip":"10.1.2.3"},"card":"4111111111111111"},
	 "custom":{"dob":"1980-02-03"}}`))
	if err != nil {
		t.Fatal(err)
	}
	m := masker(t, MaskConfig{HashKey: "0123456789abcdef-key", Rules: []MaskRule{
		{Path: "metadata.contact.email", Strategy: "hash"},
		{Path: "metadata.contact.ip", Strategy: "drop"},
		{Path: "metadata.card", Strategy: "last4"},
		{Path: "custom.dob", Strategy: "drop"},
		{Path: "lead_data.missing", Strategy: "last4"},
	}})
	if _, err := m.Apply(nil, e); err != nil {
		t.Fatal(err)
	}
	out, _ := schemas.JSON{}.Append(nil, e)
	got := string(out)
	for _, want := range []string{
		`"ssn":"***-**-6789"`, `"email":"j***@example.com"`, `"phone":"412*******"`, `"first_name":"J"`,
		`"last_name":"***"`, `"state":"CA"`, `"contact":{"email":"` + m.Hash("bob@corp.io") + `"}`,
		`"card":"************1111"`, `"custom":{}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("masked event lacks %s:\n%s", want, got)
		}
	}
	for _, secret := range []string{"123-45-6789", "jane@example.com", "4120875956", "Jane", "Doe", "bob@corp.io", "10.1.2.3", "4111111111111111", "1980-02-03"} {
		if strings.Contains(got, secret) {
			t.Errorf("masked event still holds %q:\n%s", secret, got)
		}
	}
	other := masker(t, MaskConfig{HashKey: "another-key-of-16+bytes"})
	if h := m.Hash("x"); h != masker(t, MaskConfig{HashKey: "0123456789abcdef-key"}).Hash("x") || h == m.Hash("y") || h == other.Hash("x") {
		t.Error("hash is not a keyed, stable function of the value")
	}
}

func TestMaskerDefaultsCanBeReplacedOrDisabled(t *testing.T) {
	off := false
	if rules := (MaskConfig{Defaults: &off}).MaskRules(); len(rules) != 0 {
		t.Fatalf("defaults off: %v", rules)
	}
	rules := MaskConfig{Rules: []MaskRule{{Path: "lead_data.email", Strategy: "drop"}}}.MaskRules()
	n := 0
	for _, r := range rules {
		if r.Path == "lead_data.email" {
			n++
			if r.Strategy != "drop" {
				t.Fatalf("configured rule did not replace the default: %v", r)
			}
		}
	}
	if n != 1 || len(rules) != len(DefaultMaskRules) {
		t.Fatalf("rules %v", rules)
	}
}

// FuzzMaskFunctions: no strategy panics, each returns valid UTF-8 for
// valid input, and none returns its input whole when the input has five or
// more letters and digits (less is no secret worth the name).
func FuzzMaskFunctions(f *testing.F) {
	for _, s := range []string{"123-45-6789", "jane@example.com", "+1 (412) 087-5956", "Jane", "", "@", "ü@ß", "1@@2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, fn := range map[string]func(string) string{"last4": MaskLast4, "email": MaskEmail, "phone_area": MaskPhoneArea, "initial": MaskInitial} {
			out := fn(s)
			if utf8.ValidString(s) && !utf8.ValidString(out) {
				t.Fatalf("%s(%q) = %q is not valid UTF-8", name, s, out)
			}
			if name != "email" && alnum(s) >= 5 && strings.Contains(out, strings.TrimSpace(s)) {
				t.Fatalf("%s(%q) = %q still holds the input", name, s, out)
			}
		}
		// Of an address only the first character and the domain remain.
		if out, at := MaskEmail(s), strings.LastIndexByte(s, '@'); out != "***" {
			local, _, _ := strings.Cut(out, "***@")
			if at <= 0 || utf8.RuneCountInString(local) != 1 || !strings.HasSuffix(out, s[at:]) {
				t.Fatalf("email(%q) = %q", s, out)
			}
		}
	})
}

func alnum(s string) int {
	n := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			n++
		}
	}
	return n
}

// FuzzMaskerApply masks arbitrary lead_data objects: it must not panic, and
// the result must still decode as an event.
func FuzzMaskerApply(f *testing.F) {
	f.Add(`{"ssn":"123-45-6789","email":"a@b.c","phone":[1,2],"first_name":null}`)
	f.Add(`{"ssn":{"nested":"x"},"last_name":""}`)
	m := masker(f, MaskConfig{})
	f.Fuzz(func(t *testing.T, lead string) {
		e, err := schemas.JSON{}.Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","lead_data":` + lead + `}`))
		if err != nil {
			return
		}
		if _, err := m.Apply(nil, e); err != nil {
			return // goes to the DLQ; not a crash
		}
		out, _ := schemas.JSON{}.Append(nil, e)
		if _, err := (schemas.JSON{}).Decode(out); err != nil {
			t.Fatalf("masked event does not decode: %v\n%s", err, out)
		}
	})
}

// The masker reads containers a decoder checked. Given text that breaks
// off all the same (a bug upstream, say), it leaves out what it could not
// read, with or without a drop rule, and never copies it unmasked.
func TestMaskerLeavesOutWhatItCannotRead(t *testing.T) {
	for _, c := range []MaskConfig{{}, {Rules: []MaskRule{{Path: "lead_data.zip", Strategy: "drop"}}}} {
		m := masker(t, c)
		e := &schemas.Event{LeadData: []byte(`{"ssn":"123-45-6789","state":"IL",oops,"phone":"555-123-4567","ssn2":"987-65-4321"}`)}
		if _, err := m.Apply(nil, e); err != nil {
			t.Fatal(err)
		}
		if want := `{"ssn":"***-**-6789","state":"IL"}`; string(e.LeadData) != want {
			t.Fatalf("rules %v masked to %s, want %s", c.Rules, e.LeadData, want)
		}
	}
}

// Keys that a reader takes for a rule's name match it: NUL and other
// characters that are not letters or digits, compatibility forms
// (fullwidth), the dotless ı. Numbers of every kind count as digits. A
// string where a rule looks inside is masked as the JSON it holds, or
// replaced whole.
func TestMaskerMatchesWhatReadersRead(t *testing.T) {
	m := masker(t, MaskConfig{Rules: []MaskRule{
		{Path: "lead_data.ssn", Strategy: "last4"}, {Path: "lead_data.email", Strategy: "email"},
		{Path: "metadata.contact.email", Strategy: "email"}, {Path: "metadata.other.phone", Strategy: "phone_area"},
	}})
	for _, tc := range []struct{ doc, want, secret string }{
		{`"lead_data":{"ssn\u0000":"123-45-6789"}`, `***-**-6789`, "123-45"},
		{`"lead_data":{"S-S-N":"123-45-6789"}`, `***-**-6789`, "123-45"},
		{`"lead_data":{"ｓｓｎ":"123-45-6789"}`, `***-**-6789`, "123-45"},
		{`"lead_data":{"emaıl":"jane@example.com"}`, `j***@example.com`, "jane@"},
		{`"lead_data":{"e\u200bmail":"jane@example.com"}`, `j***@example.com`, "jane@"},
		{`"lead_data":{"ssn":"①②③-④⑤-⑥⑦⑧⑨"}`, `***-**-⑥⑦⑧⑨`, "①②③"},
		{`"metadata":{"contact":"{\"email\":\"bob@corp.io\",\"n\":1}"}`, `{\"email\":\"b***@corp.io\",\"n\":1}`, "bob@"},
		{`"metadata":{"contact":"call bob@corp.io"}`, `"contact":"***"`, "bob@"},
		{`"metadata":{"other":"[{\"phone\":\"412-087-5956\"}]"}`, `412-***-****`, "087-5956"},
	} {
		t.Run(tc.doc, func(t *testing.T) {
			e, err := schemas.JSON{}.Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t",` + tc.doc + `}`))
			if err != nil {
				t.Fatalf("%s: %v", tc.doc, err)
			}
			if _, err := m.Apply(nil, e); err != nil {
				t.Fatal(err)
			}
			out, _ := schemas.JSON{}.Append(nil, e)
			if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), tc.secret) {
				t.Errorf("%s masked as\n%s\nwant %s", tc.doc, out, tc.want)
			}
		})
	}
}
