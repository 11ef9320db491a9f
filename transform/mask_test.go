package transform_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/firehose/firehose/processor"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// raw are PII values as a producer sends them; the processor's default
// masking hides each.
var raw = []string{"123-45-6789", "jane.doe@example.com", "4120875956", "Janeway", "Doerthy"}

// Masked values stay masked after any transform: random sequences of
// select, rename, set and drop over the PII's paths, on events the
// processor masked, never bring a raw value back.
func TestMaskingHoldsAfterEveryTransform(t *testing.T) {
	m, err := processor.NewMasker(processor.MaskConfig{Rules: []processor.MaskRule{{Path: "metadata.contact.email", Strategy: "email"}}})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"lead_data.ssn", "lead_data.email", "lead_data.phone", "lead_data.first_name", "lead_data.last_name",
		"metadata.contact.email", "lead_data", "metadata", "event_id", "x.y"}
	exprs := []string{"lead_data.ssn", "lead_data.email + '!'", "metadata.contact", "lead_data", "string(lead_data.phone)", "sequence"}
	r := rand.New(rand.NewPCG(7, 7))
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	for i := range 500 {
		e, err := schemas.JSON{}.Decode(fmt.Appendf(nil, `{"event_id":"e%d","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":%d,"event_type":"t",`+
			`"lead_data":{"ssn":"123-45-6789","email":"jane.doe@example.com","phone":"4120875956","first_name":"Janeway","last_name":"Doerthy"},`+
			`"metadata":{"contact":{"email":"jane.doe@example.com"}}}`, i, i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Apply(nil, e); err != nil {
			t.Fatal(err)
		}
		masked, _ := schemas.JSON{}.Append(nil, e)
		for _, v := range raw {
			if strings.Contains(string(masked), v) {
				t.Fatalf("the processor left %q in %s", v, masked)
			}
		}
		var steps []transform.Step
		for range 1 + r.IntN(4) {
			switch r.IntN(4) {
			case 0:
				steps = append(steps, transform.Step{Select: []string{pick(paths), pick(paths), pick(paths)}})
			case 1:
				steps = append(steps, transform.Step{Rename: transform.Pairs{{Key: pick(paths), Value: pick(paths)}}})
			case 2:
				steps = append(steps, transform.Step{Set: transform.Pairs{{Key: pick(paths), Value: pick(exprs)}}})
			default:
				steps = append(steps, transform.Step{Drop: []string{pick(paths)}})
			}
		}
		tr, err := transform.Compile(steps)
		if err != nil {
			t.Fatal(err)
		}
		out, err := tr.Apply(nil, e, nil)
		if err != nil {
			continue // an expression that fails on the event: a dead letter
		}
		for _, v := range raw {
			if strings.Contains(string(out), v) {
				t.Fatalf("steps %+v brought %q back: %s", steps, v, out)
			}
		}
	}
}
