package transform

import (
	"reflect"
	"slices"
)

// Column is one top-level field of what a transform makes, known before
// any event: its name and the type of its values, one of the Type
// constants. An event may still lack it (a path it does not have, an
// optional field it left out).
type Column struct {
	Name string
	Type string
}

// Types of a Column.
const (
	String    = "string"
	Long      = "long"
	Double    = "double"
	Boolean   = "boolean"
	Timestamp = "timestamp" // a JSON string in the event's timestamp layout
	JSON      = "json"      // any JSON value: an object, or a type only an event can tell
)

// eventColumns are the top-level fields of a processed event, in the
// order its JSON has them; unknown fields follow.
var eventColumns = []Column{
	{"event_id", String}, {"timestamp", Timestamp}, {"account_id", String}, {"resource_id", String},
	{"sequence", Long}, {"event_type", String}, {"resource_type", String}, {"flow_id", String},
	{"lead_id", String}, {"entity_type", String}, {"entity_id", String}, {"outcome", String},
	{"duration_ms", Long}, {"metadata", JSON}, {"lead_data", JSON},
}

// Shape returns the top-level fields the steps give an event, in order,
// and whether an event's unknown top-level fields (those the schema does
// not name) pass through beside them: until a select, they do. A field
// whose type the steps cannot tell before an event (an expression typed
// any, a rename of an optional field onto another) is JSON.
func (t *Transform) Shape() (cols []Column, open bool) {
	cols, open = slices.Clone(eventColumns), true
	find := func(name string) int {
		return slices.IndexFunc(cols, func(c Column) bool { return c.Name == name })
	}
	typeOf := func(name string) (string, bool) {
		if i := find(name); i >= 0 {
			return cols[i].Type, true
		}
		return JSON, open
	}
	// put makes path p hold a value of type typ; certain says whether
	// every event gets it (otherwise what was there may stay).
	put := func(p []string, typ string, certain bool) {
		if len(p) > 1 {
			typ, certain = JSON, true
		}
		i := find(p[0])
		switch {
		case i < 0:
			cols = append(cols, Column{p[0], typ})
		case !certain && cols[i].Type != typ:
			cols[i].Type = JSON
		case certain:
			cols[i].Type = typ
		}
	}
	for _, st := range t.steps {
		switch st.kind {
		case "select":
			var out []Column
			for _, p := range st.paths {
				typ, ok := typeOf(p[0])
				if !ok || len(p) > 1 && typ != JSON || slices.ContainsFunc(out, func(c Column) bool { return c.Name == p[0] }) {
					continue
				}
				out = append(out, Column{p[0], typ})
			}
			cols, open = out, false
		case "rename":
			for j, p := range st.paths {
				typ, ok := typeOf(p[0])
				if !ok {
					continue // never there, so never moved
				}
				if len(p) > 1 {
					typ = JSON
				} else if i := find(p[0]); i >= 0 {
					cols = slices.Delete(cols, i, i+1)
				}
				put(st.to[j], typ, len(p) == 1 && required[p[0]])
			}
		case "set":
			for j, p := range st.paths {
				put(p, exprType(st.exprs[j].Type()), true)
			}
		case "drop":
			for _, p := range st.paths {
				if i := find(p[0]); i >= 0 && len(p) == 1 {
					cols = slices.Delete(cols, i, i+1)
				}
			}
		}
	}
	return cols, open
}

// Rewrites reports whether a step may give top-level field name another
// value than the event's: a set or a rename onto it, or below it.
func (t *Transform) Rewrites(name string) bool {
	if t == nil {
		return false
	}
	for _, st := range t.steps {
		targets := st.to
		if st.kind == "set" {
			targets = st.paths
		}
		for _, p := range targets {
			if p[0] == name {
				return true
			}
		}
	}
	return false
}

// required are the fields every processed event has.
var required = map[string]bool{"event_id": true, "timestamp": true, "account_id": true, "resource_id": true, "sequence": true, "event_type": true}

// exprType is the column type of an expression's static result type.
func exprType(t reflect.Type) string {
	if t == nil {
		return JSON
	}
	switch t.Kind() {
	case reflect.String:
		return String
	case reflect.Bool:
		return Boolean
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Long
	case reflect.Float32, reflect.Float64:
		return Double
	}
	return JSON
}
