package transform

import "testing"

// The columns a Parquet file of transformed events has: each step's
// effect on the top-level fields and their types.
func TestShape(t *testing.T) {
	for _, tc := range []struct{ name, steps, want string }{
		{"no select keeps the event's fields and its unknown ones", `[{drop: [metadata, lead_data, flow_id, lead_id, entity_type, entity_id, resource_type, duration_ms]}]`,
			`[event_id:string timestamp:timestamp account_id:string resource_id:string sequence:long event_type:string outcome:string] open`},
		{"select keeps the named fields, nested ones as JSON, in order", `[{select: [sequence, metadata.price, event_id, metadata.source, campaign, event_id.x]}]`,
			`[sequence:long metadata:json event_id:string campaign:json]`},
		{"rename of a required field keeps its type", `[{select: [event_id, sequence, account_id]}, {rename: {event_id: id, sequence: account_id}}]`,
			`[account_id:long id:string]`},
		{"rename of an optional field onto another type is JSON", `[{select: [flow_id, sequence]}, {rename: {flow_id: sequence}}]`,
			`[sequence:json]`},
		{"rename into an object", `[{select: [outcome, lead_data.state]}, {rename: {outcome: result.outcome, lead_data.state: state}}]`,
			`[lead_data:json result:json state:json]`},
		{"set takes the expression's type", `[{select: [event_id]}, {set: {a: "float(metadata.price) * 100", b: "sequence + 1", c: "upper(event_id)", d: "outcome == 'ok'", e: "metadata.price", f.g: "1", event_id: "sequence"}}]`,
			`[event_id:long a:double b:long c:string d:boolean e:json f:json]`},
		{"the issue's four steps", `[{select: [event_id, event_type, resource_id, sequence, metadata.buyer_response.price, lead_data.email]}, {rename: {event_type: type}}, {set: {price_cents: "float(metadata.buyer_response.price) * 100"}}, {drop: [metadata]}]`,
			`[event_id:string resource_id:string sequence:long lead_data:json type:string price_cents:double]`},
	} {
		tr, err := Compile(steps(t, tc.steps))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cols, open := tr.Shape()
		got := "["
		for i, c := range cols {
			if i > 0 {
				got += " "
			}
			got += c.Name + ":" + c.Type
		}
		got += "]"
		if open {
			got += " open"
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
