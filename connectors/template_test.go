package connectors

import (
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/schemas"
)

func render(t *testing.T, tmpl, account string) string {
	t.Helper()
	p, err := ParseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return string(p.Render(nil, "events", 3, time.Date(2024, 1, 15, 14, 0, 0, 0, time.UTC), &schemas.Event{AccountID: account}))
}

// Distinct values render to distinct path elements, none of which can
// climb out of the prefix or exceed what a file system allows.
func TestRenderedValuesAreSafeAndOneToOne(t *testing.T) {
	values := []string{"acc/B", "acc B", "acc_B", "acc%2FB", "", "unknown", "%unknown", ".", "..", "%2E", "a~b", "ünï", strings.Repeat("x", 300), strings.Repeat("x", 299) + "y", strings.Repeat("/", 200)}
	seen := map[string]string{}
	for _, v := range values {
		got := render(t, "acc={{account_id}}/", v)
		el := strings.TrimSuffix(strings.TrimPrefix(got, "acc="), "/")
		if strings.Contains(el, "/") || el == "." || el == ".." || len(el) > maxValueBytes {
			t.Errorf("%q renders as %q", v, el)
		}
		if other, ok := seen[el]; ok {
			t.Errorf("%q and %q both render as %q", v, other, el)
		}
		seen[el] = v
	}
	if got := render(t, "{{account_id}}", "acc/B"); got != "acc%2FB" {
		t.Errorf("acc/B renders as %q", got)
	}
	if got := render(t, "{{topic}}/{{year}}/{{month}}/{{partition}}/{{account_id}}", "acc_1"); got != "events/2024/01/3/acc_1" {
		t.Errorf("plain values render as %q", got)
	}
}

func FuzzRenderIsSafe(f *testing.F) {
	f.Add("acc/B")
	f.Add("..")
	f.Add(strings.Repeat("é", 90))
	p, err := ParseTemplate("{{account_id}}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		el := string(p.Render(nil, "events", 0, time.Time{}, &schemas.Event{AccountID: v}))
		if strings.ContainsAny(el, "/\\\x00") || el == "." || el == ".." || el == "" || len(el) > maxValueBytes {
			t.Fatalf("%q renders as %q", v, el)
		}
	})
}
