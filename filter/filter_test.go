package filter

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/firehose/firehose/schemas"
)

func event(t testing.TB, js string) *schemas.Event {
	t.Helper()
	e, err := schemas.JSON{}.Decode([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

const base = `{"event_id":"e1","timestamp":"2024-01-15T14:30:45.234Z","account_id":"acc_1","resource_id":"lead_1","sequence":3,
 "event_type":"recipient.delivered","outcome":"failure","duration_ms":120,
 "metadata":{"price":25.5,"source":"google","tags":["a","b"]},"lead_data":{"state":"CA","age":41},"campaign":"spring"}`

func TestMatch(t *testing.T) {
	e := event(t, base)
	tests := []struct {
		name string
		cfg  Config
		want bool
	}{
		{"empty passes everything", Config{}, true},
		{"type wildcard", Config{EventTypes: []string{"recipient.*"}}, true},
		{"type wildcard miss", Config{EventTypes: []string{"lead.*", "feedback.*"}}, false},
		{"exact type", Config{EventTypes: []string{"recipient.delivered"}}, true},
		{"excluded type", Config{ExcludeEventTypes: []string{"*.delivered"}}, false},
		{"outcome", Config{Outcomes: []string{"failure", "error"}}, true},
		{"outcome miss", Config{Outcomes: []string{"success"}}, false},
		{"nested number", Config{Where: []Rule{{Expr: "metadata.price > 20"}}}, true},
		{"nested number false", Config{Where: []Rule{{Expr: "metadata.price > 30"}}}, false},
		{"nested string", Config{Where: []Rule{{Expr: `lead_data.state == "CA"`}}}, true},
		{"combined with matches", Config{Where: []Rule{{Expr: `outcome == "failure" && event_type matches "^recipient\\."`}}}, true},
		{"all rules must hold", Config{Where: []Rule{{Expr: "sequence == 3"}, {Expr: "duration_ms > 500"}}}, false},
		{"unknown top-level field", Config{Where: []Rule{{Expr: `extra.campaign == "spring"`}}}, true},
		{"array membership", Config{Where: []Rule{{Expr: `"b" in metadata.tags`}}}, true},
		{"missing field compares unequal", Config{Where: []Rule{{Expr: `lead_data.zip == "94105"`}}}, false},
		{"missing field in arithmetic is no match by default", Config{Where: []Rule{{Expr: "metadata.cost > 20"}}}, false},
		{"conditions combine", Config{EventTypes: []string{"recipient.*"}, Outcomes: []string{"failure"}, Where: []Rule{{Expr: "metadata.price > 20"}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Match(e)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRuntimeErrorPolicy(t *testing.T) {
	e := event(t, base)
	f, err := Compile(Config{Where: []Rule{{Expr: "metadata.source > 20", OnError: DLQ}}})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := f.Match(e)
	var fe *Error
	if ok || !errors.As(err, &fe) || fe.Expr != "metadata.source > 20" {
		t.Fatalf("dlq policy: ok=%v err=%v", ok, err)
	}
	f, _ = Compile(Config{Where: []Rule{{Expr: "metadata.source > 20"}}})
	if ok, err := f.Match(e); ok || err != nil {
		t.Fatalf("no_match policy: ok=%v err=%v", ok, err)
	}
}

func TestCompileErrorsNameThePath(t *testing.T) {
	_, err := Compile(Config{
		EventTypes: []string{"ok.*", "bad[pattern"},
		Where:      []Rule{{Expr: "metadata.price >"}, {Expr: "event_typ == 1"}, {Expr: "sequence > 1", OnError: "explode"}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"event_types[1]: bad pattern", "where[0].expr: \"metadata.price >\" does not compile", "where[1].expr: \"event_typ == 1\" does not compile: unknown name event_typ", "where[2].on_error: must be no_match or dlq"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if _, err := Compile(Config{Where: []Rule{{Expr: `event_type + 1`}}}); err == nil {
		t.Error("a non-boolean expression compiled")
	}
}

func BenchmarkMatchTypeAndOutcome(b *testing.B) {
	e := event(b, base)
	f, _ := Compile(Config{EventTypes: []string{"recipient.*", "lead.*"}, Outcomes: []string{"failure"}})
	for b.Loop() {
		if ok, _ := f.Match(e); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkMatchExpression(b *testing.B) {
	e := event(b, base)
	f, _ := Compile(Config{Where: []Rule{{Expr: `metadata.price > 20 && lead_data.state == "CA" && event_type matches "^recipient\\."`}}})
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := f.Match(e); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkMatchTopLevelExpression(b *testing.B) {
	e := event(b, base)
	f, _ := Compile(Config{Where: []Rule{{Expr: `outcome == "failure" && duration_ms > 100`}}})
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := f.Match(e); !ok {
			b.Fatal("no match")
		}
	}
}

// FuzzMatch compiles arbitrary expressions and runs them over events with
// arbitrary metadata: neither may panic, and an error never escapes the
// no_match policy.
func FuzzMatch(f *testing.F) {
	f.Add(`metadata.price > 20`, `{"price":25}`)
	f.Add(`lead_data.state == "CA" && sequence > 1`, `{"a":[1,{"b":null}]}`)
	f.Add(`metadata.a.b.c[0] matches "x"`, `{"a":{"b":{"c":["xyz"]}}}`)
	f.Add(`len(metadata) / 0 > 1`, `{}`)
	f.Fuzz(func(t *testing.T, src, meta string) {
		flt, err := Compile(Config{Where: []Rule{{Expr: src}}})
		if err != nil {
			return
		}
		e := event(t, base)
		e.Metadata = nil
		if m, err := (schemas.JSON{}).Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t","metadata":` + meta + `}`)); err == nil {
			e.Metadata = m.Metadata
		}
		if _, err := flt.Match(e); err != nil {
			t.Fatalf("no_match policy returned an error: %v", err)
		}
	})
}

// globMatch's shortcuts answer as path.Match does.
func FuzzGlobMatch(f *testing.F) {
	for _, c := range [][2]string{
		{"lead.*", "lead.created"}, {"lead.*", "lead."}, {"lead.*", "lead"}, {"lead.*", "lead.a/b"}, {"*", ""},
		{"*", "a/b"}, {"lead.created", "lead.created"}, {"lead.created", "lead.createdx"}, {"l?ad.*", "lead.x"},
		{`lead\*`, "lead*"}, {"[a-c]*", "b.x"}, {"a*b", "axxb"}, {"", ""},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		want, err := path.Match(p, s)
		if err != nil {
			return // Compile refuses such patterns
		}
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, path.Match says %v", p, s, got, want)
		}
	})
}
