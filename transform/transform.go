// Package transform shapes a connector's own copy of each event: select
// keeps dotted paths (with their nesting), rename moves a path, set
// computes a field with an expression over the event (expr-lang, the
// filters' syntax and fields), and drop removes paths. Steps run in order,
// on processed events: what the processor masked stays masked, as no step
// can reach a raw value.
package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/schemas"
)

// Step is one transform step: exactly one of its fields is set.
type Step struct {
	// Select keeps these paths (metadata.buyer_response.price), with
	// their nesting, each field where the paths first name it.
	Select []string `yaml:"select"`
	Rename Pairs    `yaml:"rename"` // from path: to path, in order
	// Set computes fields, in order: path: expression. An expression
	// reads the event as the processor wrote it (the fields a filter
	// sees), not the shape earlier steps made.
	Set  Pairs    `yaml:"set"`
	Drop []string `yaml:"drop"` // paths to remove
}

// Pairs is a YAML mapping whose order counts.
type Pairs []Pair

// Pair is one entry of Pairs.
type Pair struct{ Key, Value string }

// UnmarshalYAML keeps the mapping's order; every value is a string.
func (p *Pairs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a mapping such as {event_type: type}", n.Line)}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s must be a string", v.Line, k.Value)}}
		}
		*p = append(*p, Pair{k.Value, v.Value})
	}
	return nil
}

// Validate reports every problem of steps (paths relative to transform):
// a step with none or several operations, a malformed path, an expression
// that does not compile or type-check.
func Validate(steps []Step) error {
	_, err := Compile(steps)
	return err
}

// Transform is a compiled list of steps, safe for concurrent use.
type Transform struct {
	steps []step
	pool  sync.Pool // of *scratch
}

type step struct {
	kind  string // select, rename, set or drop
	paths [][]string
	to    [][]string // rename's targets
	exprs []*filter.Expr
	// segs and toSegs are paths and to with each name's JSON key, as
	// Apply works with them.
	segs, toSegs [][]seg
	pick         *pick // select's paths as a tree
}

// pick is a select's paths as a tree: each name once, its children in the
// order the paths first name them. A name that ends a path keeps its
// whole value, whatever longer paths name below it.
type pick struct {
	seg
	whole bool
	below []*pick
}

func pickOf(paths [][]seg) *pick {
	root := &pick{}
	for _, p := range paths {
		n := root
		for i, sg := range p {
			j := slices.IndexFunc(n.below, func(c *pick) bool { return c.name == sg.name })
			if j < 0 {
				j = len(n.below)
				n.below = append(n.below, &pick{seg: sg})
			}
			n = n.below[j]
			n.whole = n.whole || i == len(p)-1
		}
	}
	return root
}

// seg is one name of a path and the name as a JSON string, quotes and
// all, encoded once.
type seg struct{ name, key string }

func segsOf(path []string) []seg {
	out := make([]seg, len(path))
	for i, name := range path {
		out[i] = seg{name, string(appendString(nil, name))}
	}
	return out
}

// Compile checks and compiles steps; nil steps give a nil Transform.
func Compile(steps []Step) (*Transform, error) {
	if len(steps) == 0 {
		return nil, nil
	}
	var v yamlconf.Problems
	t := &Transform{}
	for i, s := range steps {
		at := fmt.Sprintf("[%d]", i)
		var st step
		ops := 0
		path := func(field, p string) []string {
			parts := strings.Split(p, ".")
			for _, x := range parts {
				if x == "" {
					v.Add(at+"."+field, "must be a dotted path such as metadata.price, got %q", p)
					return nil
				}
			}
			return parts
		}
		if len(s.Select) > 0 {
			ops++
			st.kind = "select"
			for _, p := range s.Select {
				st.paths = append(st.paths, path("select", p))
			}
		}
		if len(s.Rename) > 0 {
			ops++
			st.kind = "rename"
			for _, p := range s.Rename {
				st.paths = append(st.paths, path("rename", p.Key))
				st.to = append(st.to, path("rename."+p.Key, p.Value))
			}
		}
		if len(s.Set) > 0 {
			ops++
			st.kind = "set"
			for _, p := range s.Set {
				st.paths = append(st.paths, path("set", p.Key))
				x, err := filter.CompileExpr(p.Value)
				if err != nil {
					v.Add(at+".set."+p.Key, "%v", err)
				}
				st.exprs = append(st.exprs, x)
			}
		}
		if len(s.Drop) > 0 {
			ops++
			st.kind = "drop"
			for _, p := range s.Drop {
				st.paths = append(st.paths, path("drop", p))
			}
		}
		if ops != 1 {
			v.Add(at, "a step is one of select, rename, set or drop, got %d of them", ops)
		}
		t.steps = append(t.steps, st)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	for i := range t.steps {
		st := &t.steps[i]
		for _, p := range st.paths {
			st.segs = append(st.segs, segsOf(p))
		}
		for _, p := range st.to {
			st.toSegs = append(st.toSegs, segsOf(p))
		}
		if st.kind == "select" {
			st.pick = pickOf(st.segs)
		}
	}
	return t, nil
}

// Apply appends e shaped by the steps, as one JSON object, to dst. src
// is e as JSON when the caller has it (the record value it was decoded
// from); nil encodes e. An error (an expression that failed on e) names
// the step.
func (t *Transform) Apply(dst []byte, e *schemas.Event, src []byte) ([]byte, error) {
	s, _ := t.pool.Get().(*scratch)
	if s == nil {
		s = &scratch{}
	}
	defer t.pool.Put(s)
	defer s.reset()
	var o *object
	steps := t.steps
	switch {
	case steps[0].kind == "select":
		// Encode only the fields it keeps.
		o, steps = s.pick(e, nil, steps[0].pick), steps[1:]
	case src == nil:
		s.buf = schemas.AppendJSON(s.buf[:0], e, nil)
		src = s.buf[:len(s.buf):len(s.buf)]
		fallthrough
	default:
		o = s.parse(src)
	}
	for i, st := range steps {
		i += len(t.steps) - len(steps)
		switch st.kind {
		case "select":
			o = s.pick(e, o, st.pick)
		case "rename":
			for j, p := range st.segs {
				if f, ok := o.remove(s, p); ok {
					o.set(s, st.toSegs[j], f)
				}
			}
		case "set":
			for j, p := range st.segs {
				v, err := st.exprs[j].Eval(e)
				if err != nil {
					return nil, fmt.Errorf("transform[%d].set.%s: %w", i, strings.Join(st.paths[j], "."), err)
				}
				start := len(s.vals)
				if s.vals, err = appendValue(s.vals, v); err != nil {
					return nil, fmt.Errorf("transform[%d].set.%s: %v is not JSON: %w", i, strings.Join(st.paths[j], "."), v, err)
				}
				o.set(s, p, field{raw: s.vals[start:len(s.vals):len(s.vals)]})
			}
		case "drop":
			for _, p := range st.segs {
				o.remove(s, p)
			}
		}
	}
	start := len(dst)
	dst = o.append(dst)
	if out := dst[start:]; bytes.IndexByte(out, '\n') >= 0 || bytes.IndexByte(out, '\r') >= 0 {
		// Whitespace a producer left inside metadata: one line of
		// NDJSON must stay one line.
		var buf bytes.Buffer
		if err := json.Compact(&buf, dst[start:]); err != nil {
			return nil, err
		}
		dst = append(dst[:start], buf.Bytes()...)
	}
	return dst, nil
}

// scratch is what one Apply works in, kept for the next: the objects it
// made, the encoded event and the values set computed.
type scratch struct {
	objs []*object
	used int
	buf  []byte
	vals []byte
}

// object returns an empty object.
func (s *scratch) object() *object {
	if s.used == len(s.objs) {
		s.objs = append(s.objs, &object{fields: make([]field, 0, 8)})
	}
	o := s.objs[s.used]
	s.used++
	return o
}

// reset lets go of what the last Apply read, keeping the memory.
func (s *scratch) reset() {
	for _, o := range s.objs[:s.used] {
		clear(o.fields)
		o.fields = o.fields[:0]
	}
	s.used = 0
	s.vals = s.vals[:0]
}

// object is a JSON object that keeps its fields' order. Objects inside
// are parsed only when a path goes into them.
type object struct{ fields []field }

// field is one field: an object a path went into, or any JSON value as
// it was (an object too, until a path goes into it).
type field struct {
	name string // unescaped
	key  string // name as a JSON string: as read, or encoded once
	obj  *object
	raw  []byte
}

// parse reads the object src holds, its fields borrowing src's bytes.
// src is an event's JSON as the decoder checked or the encoder wrote it.
func (s *scratch) parse(src []byte) *object {
	o := s.object()
	for m := range schemas.Members(src) {
		o.fields = append(o.fields, memberField(m))
	}
	return o
}

func memberField(m schemas.Member) field {
	return field{name: m.Key, key: unsafe.String(unsafe.SliceData(m.RawKey), len(m.RawKey)), raw: m.Value}
}

func (o *object) index(name string) int {
	for i := range o.fields {
		if o.fields[i].name == name {
			return i
		}
	}
	return -1
}

// into returns the object field j holds, parsing it now; nil when it holds
// another value.
func (o *object) into(s *scratch, j int) *object {
	f := &o.fields[j]
	if f.obj == nil && len(f.raw) > 0 && f.raw[0] == '{' {
		f.obj, f.raw = s.parse(f.raw), nil
	}
	return f.obj
}

// find returns the object that holds the last name of path and that
// name's index in it; nil when a name on the way is missing or holds no
// object.
func (o *object) find(s *scratch, path []seg) (*object, int) {
	for i, p := range path {
		j := o.index(p.name)
		if j < 0 {
			return nil, -1
		}
		if i == len(path)-1 {
			return o, j
		}
		if o = o.into(s, j); o == nil {
			return nil, -1
		}
	}
	return nil, -1
}

// pick returns a new object of what tree p picks from o, or from e's
// fields when o is nil (encoding only those): a path that is missing, or
// goes through a value that is not an object, picks nothing.
func (s *scratch) pick(e *schemas.Event, o *object, p *pick) *object {
	out := s.object()
	for _, c := range p.below {
		if o != nil {
			if j := o.index(c.name); j >= 0 {
				s.pickInto(out, c, o.fields[j])
			}
			continue
		}
		start := len(s.vals)
		var ok bool
		if s.vals, ok = schemas.AppendField(s.vals, e, c.name); ok {
			s.pickInto(out, c, field{name: c.name, key: c.key, raw: s.vals[start:len(s.vals):len(s.vals)]})
		}
	}
	return out
}

// pickInto adds to out what c picks from f, the field c names. Below the
// objects already parsed it reads the JSON as it is, up to the members it
// looks for.
func (s *scratch) pickInto(out *object, c *pick, f field) {
	if c.whole {
		out.fields = append(out.fields, f)
		return
	}
	var sub *object
	for _, d := range c.below {
		var g field
		var ok bool
		if f.obj != nil {
			var j int
			if j = f.obj.index(d.name); j >= 0 {
				g, ok = f.obj.fields[j], true
			}
		} else {
			g, ok = member(f.raw, d.name)
		}
		if !ok {
			continue
		}
		if sub == nil {
			sub = s.object()
		}
		s.pickInto(sub, d, g)
	}
	if sub != nil && len(sub.fields) > 0 {
		out.fields = append(out.fields, field{name: c.name, key: c.key, obj: sub})
	}
}

// member returns the first member of JSON value v named name, as index
// finds it; none when v is no object.
func member(v []byte, name string) (field, bool) {
	for m := range schemas.Members(v) {
		if m.Key == name {
			return memberField(m), true
		}
	}
	return field{}, false
}

// remove takes the field at path out and returns it.
func (o *object) remove(s *scratch, path []seg) (field, bool) {
	p, j := o.find(s, path)
	if p == nil {
		return field{}, false
	}
	f := p.fields[j]
	p.fields = append(p.fields[:j], p.fields[j+1:]...)
	return f, true
}

// set puts f at path, replacing what is there and making the objects on
// the way (a value on the way that is not an object is replaced by one).
func (o *object) set(s *scratch, path []seg, f field) {
	for i, p := range path {
		j := o.index(p.name)
		if i == len(path)-1 {
			if f.name != p.name || f.key == "" {
				f.name, f.key = p.name, p.key
			}
			if j < 0 {
				o.fields = append(o.fields, f)
			} else {
				o.fields[j] = f
			}
			return
		}
		if j < 0 {
			o.fields = append(o.fields, field{name: p.name, key: p.key, obj: s.object()})
			j = len(o.fields) - 1
		} else if o.into(s, j) == nil {
			o.fields[j] = field{name: p.name, key: p.key, obj: s.object()}
		}
		o = o.fields[j].obj
	}
}

func (o *object) append(dst []byte) []byte {
	dst = append(dst, '{')
	for i := range o.fields {
		f := &o.fields[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f.key...)
		dst = append(dst, ':')
		if f.obj != nil {
			dst = f.obj.append(dst)
		} else {
			dst = append(dst, f.raw...)
		}
	}
	return append(dst, '}')
}

// appendValue appends v, an expression's result, as JSON: the common
// results directly, the rest as encoding/json writes them.
func appendValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case float64:
		if x != 0 && x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.AppendInt(dst, int64(x), 10), nil // as 'f' writes it, faster
		}
		// encoding/json's format for this range; it also refuses NaN
		// and the infinities, and writes exponents its own way.
		if a := math.Abs(x); a == 0 || a >= 1e-6 && a < 1e21 {
			return strconv.AppendFloat(dst, x, 'f', -1, 64), nil
		}
	case string:
		return appendString(dst, x), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
