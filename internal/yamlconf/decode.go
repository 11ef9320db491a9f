package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode decodes a YAML node into v strictly: every unknown key and every
// value of the wrong type is reported, each as a *FieldError whose path
// starts at path and whose line is the node's. All problems come back at
// once in one errors.Join.
func Decode(n *yaml.Node, path string, v any) error {
	var errs []error
	unknownFields(n, reflect.TypeOf(v), path, &errs)
	if err := n.Decode(v); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return errors.Join(append(errs, &FieldError{Path: path, Line: n.Line, Column: n.Column, Msg: err.Error()})...)
		}
		for _, msg := range te.Errors {
			errs = append(errs, typeError(n, path, msg))
		}
	}
	return errors.Join(errs...)
}

var (
	nodeType    = reflect.TypeFor[yaml.Node]()
	unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
)

// unknownFields walks n beside the Go type t and reports mapping keys that
// match no yaml-tagged field, with the closest known name as a hint.
func unknownFields(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
			return
		}
		t = t.Elem()
	}
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshaler) || n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		unknownFields(n.Content[0], t, path, errs)
		return
	}
	if n.Kind == yaml.AliasNode {
		unknownFields(n.Alias, t, path, errs)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error, reported by Decode
		}
		fields, inline := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				if inline {
					continue // the owner of the inline map checks these keys
				}
				msg := fmt.Sprintf("unknown field %q", k.Value)
				if s := closest(k.Value, keys(fields)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, &FieldError{Path: join(path, k.Value), Line: k.Line, Column: k.Column, Msg: msg})
				continue
			}
			unknownFields(val, f.Type, join(path, k.Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			unknownFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	}
}

func structFields(t reflect.Type) (map[string]reflect.StructField, bool) {
	fields := make(map[string]reflect.StructField)
	inline := false
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if f.Type.Kind() == reflect.Map {
				inline = true
				continue
			}
			sub, subInline := structFields(f.Type)
			for k, v := range sub {
				fields[k] = v
			}
			inline = inline || subInline
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields, inline
}

func keys(m map[string]reflect.StructField) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest returns the candidate within edit distance 2 of s, or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	lineRe   = regexp.MustCompile(`^line (\d+): (.*)$`)
	cannotRe = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (.*)$")
)

// typeError turns one of yaml.v3's "line N: cannot unmarshal ..." messages
// into a FieldError with the path of the value on that line.
func typeError(root *yaml.Node, base, msg string) error {
	fe := &FieldError{Path: base, Msg: msg}
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return fe
	}
	fe.Line, _ = strconv.Atoi(m[1])
	fe.Msg = m[2]
	if p, col, ok := pathAtLine(root, base, fe.Line); ok {
		fe.Path, fe.Column = p, col
	}
	if c := cannotRe.FindStringSubmatch(fe.Msg); c != nil {
		got := map[string]string{"str": "a string", "seq": "a list", "map": "a mapping", "int": "an integer", "float": "a number", "bool": "a boolean", "null": "null"}[c[1]]
		if got == "" {
			got = c[1]
		}
		if c[2] != "" {
			got += fmt.Sprintf(" (%s)", c[2])
		}
		fe.Msg = fmt.Sprintf("must be %s, got %s", goTypeName(c[3]), got)
	}
	return fe
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "time.Duration":
		return "a duration such as 5s or 2m"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return "a mapping (" + t + ")"
}

// pathAtLine finds the value node that starts on line and returns its path.
func pathAtLine(n *yaml.Node, path string, line int) (string, int, bool) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return pathAtLine(n.Content[0], path, line)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Line == line && (v.Kind == yaml.ScalarNode || v.Kind == yaml.AliasNode || v.Style&yaml.FlowStyle != 0) {
				return join(path, k.Value), v.Column, true
			}
			if p, c, ok := pathAtLine(v, join(path, k.Value), line); ok {
				return p, c, true
			}
			if v.Line == line || k.Line == line {
				return join(path, k.Value), v.Column, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if r, col, ok := pathAtLine(c, p, line); ok {
				return r, col, true
			}
			if c.Line == line {
				return p, c.Column, true
			}
		}
	}
	return "", 0, false
}

// nodeAt returns the node at a path such as connectors[0].batch.max_events,
// or the deepest existing ancestor when the field is absent (a missing
// required field is best reported where its parent is).
func nodeAt(n *yaml.Node, path string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, seg := range splitPath(path) {
		next := child(n, seg)
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// keyNodeAt returns the key node of the mapping entry at path, or nil.
func keyNodeAt(root *yaml.Node, path string) *yaml.Node {
	segs := splitPath(path)
	if len(segs) == 0 {
		return nil
	}
	parent := root
	if parent.Kind == yaml.DocumentNode && len(parent.Content) > 0 {
		parent = parent.Content[0]
	}
	for _, seg := range segs[:len(segs)-1] {
		if parent = child(parent, seg); parent == nil {
			return nil
		}
	}
	if parent.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == segs[len(segs)-1] {
			return parent.Content[i]
		}
	}
	return nil
}

func child(n *yaml.Node, seg string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if i, err := strconv.Atoi(seg); err == nil && n.Kind == yaml.SequenceNode {
		if i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1]
		}
	}
	return nil
}

// splitPath splits a.b[2].c into a, b, 2, c.
func splitPath(path string) []string {
	var out []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				out = append(out, part)
				break
			}
			if i > 0 {
				out = append(out, part[:i])
			}
			j := strings.IndexByte(part, ']')
			if j < i {
				out = append(out, part[i:])
				break
			}
			out = append(out, part[i+1:j])
			part = part[j+1:]
		}
	}
	return out
}
