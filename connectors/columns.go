package connectors

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/schemas"
)

// Column is a typed Parquet column promoted out of an event's JSON
// (columns: of a connector writing parquet), such as
// {name: price, path: metadata.price, type: double}. An event whose value
// at the path does not fit the type goes to the DLQ, naming the column;
// an event without a value there has null.
type Column struct {
	Name string `yaml:"name"`
	// Path is a dotted path into metadata, lead_data or an unknown
	// top-level field, or the name of a top-level string field.
	Path string `yaml:"path"`
	Type string `yaml:"type"` // string, long, double or boolean
}

// ColumnTypes are the types a promoted column may have.
var ColumnTypes = []string{"string", "long", "double", "boolean"}

var columnNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)

// validColumns checks a connector's columns; paths relative to the list.
func validColumns(cols []Column) error {
	var v yamlconf.Problems
	taken := map[string]bool{}
	for _, f := range parquetColumns().Fields() {
		taken[f.Name] = true
	}
	for i, c := range cols {
		p := fmt.Sprintf("[%d]", i)
		switch {
		case !columnNameRe.MatchString(c.Name):
			v.Add(p+".name", "must be lower-case letters, digits and _ (at most 64), got %q", c.Name)
		case taken[c.Name]:
			v.Add(p+".name", "%q is already a column", c.Name)
		}
		taken[c.Name] = true
		if c.Path == "" || strings.HasPrefix(c.Path, ".") || strings.HasSuffix(c.Path, ".") || strings.Contains(c.Path, "..") {
			v.Add(p+".path", "must be a dotted path such as metadata.price, got %q", c.Path)
		}
		v.OneOf(p+".type", c.Type, ColumnTypes)
	}
	return v.Err()
}

// value returns the JSON value at the column's path in e; its Type is
// gjson.Null when there is none.
func (c Column) value(e *schemas.Event) gjson.Result {
	head, rest, nested := strings.Cut(c.Path, ".")
	var doc []byte
	switch head {
	case "metadata":
		doc = e.Metadata
	case "lead_data":
		doc = e.LeadData
	default:
		if s, ok := e.StringField(head); ok && !nested {
			if s == "" {
				return gjson.Result{}
			}
			return gjson.Result{Type: gjson.String, Str: s, Raw: strconv.Quote(s)}
		}
		doc = e.Extra.Get(head)
	}
	if len(doc) == 0 {
		return gjson.Result{}
	}
	if !nested {
		return gjson.ParseBytes(doc)
	}
	return gjson.GetBytes(doc, gjsonPath(rest))
}

// gjsonPath escapes gjson's wildcard and modifier characters, so that a
// path is only ever keys.
func gjsonPath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?#@|!\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// check reports a value at the column's path that does not fit its type.
func (c Column) check(e *schemas.Event) error {
	v := c.value(e)
	if v.Type == gjson.Null || c.fits(v) {
		return nil
	}
	raw := v.Raw
	if len(raw) > 40 {
		raw = raw[:40] + "…"
	}
	return fmt.Errorf("column %s: the value at %s is %s, not a %s", c.Name, c.Path, raw, c.Type)
}

// fits reports whether a value (not null) has the column's type.
func (c Column) fits(v gjson.Result) bool {
	switch c.Type {
	case "string":
		return v.Type == gjson.String
	case "double":
		return v.Type == gjson.Number
	case "long":
		_, err := strconv.ParseInt(v.Raw, 10, 64)
		return v.Type == gjson.Number && err == nil
	case "boolean":
		return v.Type == gjson.True || v.Type == gjson.False
	}
	return false
}
