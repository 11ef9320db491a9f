package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is how deeply objects and arrays may nest in an event, the event
// object itself counting as level 1. Deeper events are rejected as
// ClassInvalid before anything parses them recursively: a 1 MiB event of
// nested arrays would otherwise cost seconds of CPU and tens of megabytes
// of stack in every stage that reads it.
const MaxDepth = 64

// Kinds of JSON values, as scan reports them.
const (
	kindString byte = '"'
	kindNumber byte = '0'
	kindObject byte = '{'
	kindArray  byte = '['
	kindTrue   byte = 't'
	kindFalse  byte = 'f'
	kindNull   byte = 'n'
)

// member is one member of the root object, as scan reports it: raw is the
// value's text, sharing the document's memory.
type member struct {
	key     string
	raw     []byte
	kind    byte
	escaped bool // a string value with escapes: raw must be unquoted
}

// text returns the value of a string member: its bytes between the
// quotes, shared, or unquoted when it has escapes. It is "" for other
// kinds.
func (m member) text() string {
	if m.kind != kindString {
		return ""
	}
	if !m.escaped {
		s := m.raw[1 : len(m.raw)-1]
		return unsafe.String(unsafe.SliceData(s), len(s))
	}
	return unquote(m.raw)
}

// unquote returns the value of a JSON string that scan read.
func unquote(raw []byte) string {
	var s string
	_ = json.Unmarshal(raw, &s) // valid: scan checked its escapes
	return s
}

func kindName(k byte) string {
	switch k {
	case kindString:
		return "string"
	case kindNumber:
		return "number"
	case kindObject:
		return "object"
	case kindArray:
		return "array"
	case kindTrue, kindFalse:
		return "boolean"
	case kindNull:
		return "null"
	}
	return "nothing"
}

// scanned is what scan found in a document.
type scanned struct {
	valid    bool      // the text is one JSON value (RFC 8259)
	root     byte      // the kind of that value
	problems []Problem // what readers would read differently (strict only)
	tooDeep  bool      // nesting over MaxDepth: problems holds only that
	spaced   bool      // white space outside strings
}

// scan reads JSON text once, without recursion, and checks its grammar.
// The members of a root object go to top (which may be nil) as they are
// read, before the rest of the text is checked: a caller uses them only
// when the result is valid.
//
// strict also checks what a grammar check does not catch but readers
// disagree on:
//
//   - nesting deeper than MaxDepth (always checked, and reported alone, at
//     once: nothing else is worth scanning);
//   - two keys of one object that are equal ignoring case. JSON readers
//     differ on duplicates (Python, Node and Go's encoding/json keep the
//     last, others the first) and Go's encoding/json matches struct fields
//     case-insensitively, so such an event has no single meaning, and no
//     masking rule could be sure to cover the copy a reader will use;
//   - invalid UTF-8, which readers either reject or replace.
//
// prefix is prepended to the field paths of the problems (for JSON held
// in one field, as in Avro events). Validating, checking structure and
// reading the top level in one pass costs about half of what the three
// separate walks did.
func scan(data []byte, prefix string, strict bool, top func(member)) (r scanned) {
	var stackArr [8]scanFrame
	stack := stackArr[:0]
	var keysArr [32]scanKey // the keys of the open objects, innermost last
	keys := keysArr[:0]
	path := func(leaf string) string {
		var b strings.Builder
		b.WriteString(prefix)
		for i := 1; i < len(stack); i++ {
			if stack[i].name == "" {
				b.WriteString("[]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(stack[i].name)
		}
		if leaf != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(leaf)
		}
		return b.String()
	}
	// ended is called when a value of the given kind spanning
	// data[start:end] has been read; the root's members go to top.
	ended := func(start, end int, kind byte, escaped bool) {
		if len(stack) == 0 {
			r.root = kind
		} else if len(stack) == 1 && top != nil && stack[0].object {
			top(member{key: stack[0].last, raw: data[start:end:end], kind: kind, escaped: escaped})
		}
	}
	const (
		wantValue      = iota // a value
		wantValueOrEnd        // after '[': a value or ']'
		wantKeyOrEnd          // after '{': a key or '}'
		wantKey               // after ',' in an object
		wantColon             // after a key
		wantNext              // after a value: ',', the container's end, or the end of the text
	)
	state := wantValue
	n := len(data)
	for i := 0; i < n; {
		c := data[i]
		if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
			r.spaced = true
			i++
			continue
		}
		switch state {
		case wantValue, wantValueOrEnd:
			if c == ']' && state == wantValueOrEnd {
				break // an empty array: closed below
			}
			switch c {
			case '{', '[':
				if len(stack) >= MaxDepth {
					return scanned{problems: []Problem{{path(""), fmt.Sprintf("nests deeper than %d levels of objects and arrays", MaxDepth)}}, tooDeep: true}
				}
				f := scanFrame{object: c == '{', start: len(keys), offset: i}
				if n := len(stack); n > 0 && stack[n-1].object {
					f.name = stack[n-1].last
				}
				stack = append(stack, f)
				state = wantValueOrEnd
				if c == '{' {
					state = wantKeyOrEnd
				}
				i++
				continue
			case '"':
				end, escaped, ok := stringEnd(data, i)
				if !ok {
					return r
				}
				ended(i, end+1, kindString, escaped)
				i = end + 1
			case 't', 'f', 'n':
				lit := "null"
				if c == 't' {
					lit = "true"
				} else if c == 'f' {
					lit = "false"
				}
				if n-i < len(lit) || string(data[i:i+len(lit)]) != lit {
					return r
				}
				ended(i, i+len(lit), c, false)
				i += len(lit)
			default:
				end, ok := numberEnd(data, i)
				if !ok {
					return r
				}
				ended(i, end, kindNumber, false)
				i = end
			}
			state = wantNext
			continue
		case wantKeyOrEnd, wantKey:
			if c == '}' && state == wantKeyOrEnd {
				break // an empty object: closed below
			}
			if c != '"' {
				return r
			}
			end, escaped, ok := stringEnd(data, i)
			if !ok {
				return r
			}
			f := &stack[len(stack)-1]
			if strict || len(stack) == 1 {
				raw := data[i+1 : end]
				key := unsafe.String(unsafe.SliceData(raw), len(raw))
				if escaped {
					key = unquote(data[i : end+1]) // rare: "ph\u006fne" must count as "phone"
				}
				f.last = key
				if strict {
					k := scanKey{key: key, folded: foldKey(key)}
					// A key whose bit is not set yet is new: most are,
					// and need no comparison.
					bit := uint64(1) << (keyHash(k.folded) & 63)
					if f.keyBits&bit != 0 {
						if first, dup := f.lookup(keys[f.start:], k.folded); dup {
							if first == key {
								r.problems = append(r.problems, Problem{path(key), "duplicate key: JSON readers disagree on which copy counts"})
							} else {
								r.problems = append(r.problems, Problem{path(key), fmt.Sprintf("differs from key %q only in case: readers that ignore case (Go's encoding/json) would merge them", first)})
							}
						}
					}
					f.keyBits |= bit
					keys = append(keys, k)
					f.index(keys[f.start:])
				}
			}
			state = wantColon
			i = end + 1
			continue
		case wantColon:
			if c != ':' {
				return r
			}
			state = wantValue
			i++
			continue
		case wantNext:
			if len(stack) == 0 {
				return r // more after the root value
			}
			if c == ',' {
				state = wantValue
				if stack[len(stack)-1].object {
					state = wantKey
				}
				i++
				continue
			}
		}
		// c closes the innermost container, if it is the right one.
		f := stack[len(stack)-1]
		if (f.object && c != '}') || (!f.object && c != ']') {
			return r
		}
		keys = keys[:f.start]
		stack = stack[:len(stack)-1]
		ended(f.offset, i+1, data[f.offset], false)
		state = wantNext
		i++
	}
	r.valid = state == wantNext && len(stack) == 0
	if r.valid && strict && !utf8.Valid(data) {
		at := 0
		for at < len(data) {
			ru, size := utf8.DecodeRune(data[at:])
			if ru == utf8.RuneError && size == 1 {
				break
			}
			at += size
		}
		r.problems = append(r.problems, Problem{prefix, fmt.Sprintf("invalid UTF-8 at byte %d: JSON text must be UTF-8", at)})
	}
	return r
}

// stringEnd returns the index of the quote that ends the JSON string
// starting at data[i], and whether the string has escapes. ok is false when
// the string does not end, or holds a control character or an invalid
// escape.
func stringEnd(data []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for {
		for j < len(data) && !stringStop[data[j]] {
			j++
		}
		if j >= len(data) {
			return 0, false, false
		}
		switch c := data[j]; {
		case c == '"':
			return j, escaped, true
		case c == '\\':
			escaped = true
			if j+1 >= len(data) {
				return 0, false, false
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(data) {
					return 0, false, false
				}
				for _, h := range data[j+2 : j+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false, false
					}
				}
				j += 6
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		default:
			j++
		}
	}
}

// stringStop marks the bytes a string scan must look at. A table beats
// reading eight bytes at a time on events' strings, which are short
// (BenchmarkJSONDecodeBorrow: 1,050 ns against 1,330).
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// numberEnd returns the index just past the JSON number starting at
// data[i], and false when there is none.
func numberEnd(data []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		return j
	}
	j := i
	if data[j] == '-' {
		j++
	}
	switch {
	case j < len(data) && data[j] == '0':
		j++
	case j < len(data) && '1' <= data[j] && data[j] <= '9':
		j = digits(j)
	default:
		return 0, false
	}
	if j < len(data) && data[j] == '.' {
		k := digits(j + 1)
		if k == j+1 {
			return 0, false
		}
		j = k
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		k := digits(j)
		if k == j {
			return 0, false
		}
		j = k
	}
	return j, true
}

// checkStructure is scan's strict check of JSON text that is not an event
// (object text held in one field, as in Avro events): its problems, and
// whether the text is a valid JSON object.
func checkStructure(data []byte, prefix string) (ps []Problem, tooDeep, object bool) {
	r := scan(data, prefix, true, nil)
	return r.problems, r.tooDeep, r.valid && r.root == kindObject
}

// keyHash is a cheap hash of a folded key, for scanFrame.keyBits.
func keyHash(folded string) int {
	if folded == "" {
		return 0
	}
	return len(folded) + int(folded[0]) + 7*int(folded[len(folded)-1])
}

// scanFrame is one open object or array of scan.
type scanFrame struct {
	keyBits uint64 // bit keyHash%64 of every key read in this object
	object  bool
	offset  int    // where it starts in the text
	name    string // the key this container is the value of ("" in an array or at the root)
	last    string // the last key read, in an object
	start   int    // where this object's keys start in the key stack
	byFold  map[string]string
}

type scanKey struct{ key, folded string }

// lookup returns the first key of the object equal to folded ignoring
// case, and whether there is one.
func (f *scanFrame) lookup(keys []scanKey, folded string) (string, bool) {
	if f.byFold != nil {
		k, ok := f.byFold[folded]
		return k, ok
	}
	for _, k := range keys {
		if k.folded == folded {
			return k.key, true
		}
	}
	return "", false
}

// index keeps a large object's keys in a map, so that an object of many
// thousand keys costs linear time, not quadratic. keys are the object's
// keys, the newest last.
func (f *scanFrame) index(keys []scanKey) {
	switch {
	case f.byFold != nil:
		k := keys[len(keys)-1]
		if _, ok := f.byFold[k.folded]; !ok {
			f.byFold[k.folded] = k.key
		}
	case len(keys) >= 32:
		f.byFold = make(map[string]string, 2*len(keys))
		for _, k := range keys {
			if _, ok := f.byFold[k.folded]; !ok {
				f.byFold[k.folded] = k.key
			}
		}
	}
}

// FoldKey maps a key to one representative of its case-folding class, as
// the decoder compares keys; maskers use it to match keys ignoring case.
func FoldKey(s string) string { return foldKey(s) }

// foldKey maps a key to one representative of its case-folding class, so
// that two keys are equal ignoring case (as strings.EqualFold and Go's
// encoding/json compare them) exactly when their folded forms are equal.
func foldKey(s string) string {
	ascii, upper := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii && !upper {
		return s
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		// The lower case of the smallest rune of r's simple-folding
		// orbit stands for all of them: K, k and the Kelvin sign all
		// become k, as ASCII keys are lowered above.
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(unicode.ToLower(m))
	}
	return b.String()
}

// CheckedJSON reports whether text is JSON that the decoder would take
// inside an event: valid, nested at most MaxDepth levels, valid UTF-8, no
// two keys of an object equal ignoring case. Walkers of this package's
// output (Members, Elements) may then read it.
func CheckedJSON(text []byte) bool {
	r := scan(text, "", true, nil)
	return r.valid && !r.tooDeep && len(r.problems) == 0
}
