package schemas

import (
	"bytes"
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

// WithinDepth reports whether JSON text nests no deeper than MaxDepth,
// without recursion: what a reader must know before it hands text to a
// recursive parser.
func WithinDepth(data []byte) bool {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			if depth++; depth > MaxDepth {
				return false
			}
		case '}', ']':
			depth--
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		}
	}
	return true
}

// checkStructure scans JSON text once, without recursion, for what a
// grammar check does not catch but readers disagree on:
//
//   - nesting deeper than MaxDepth (reported alone, at once: nothing else
//     is worth scanning);
//   - two keys of one object that are equal ignoring case. JSON readers
//     differ on duplicates (Python, Node and Go's encoding/json keep the
//     last, others the first) and Go's encoding/json matches struct fields
//     case-insensitively, so such an event has no single meaning, and no
//     masking rule could be sure to cover the copy a reader will use;
//   - invalid UTF-8, which readers either reject or replace.
//
// It never fails on malformed JSON: the grammar is checked separately, and
// a malformed document only makes the problems reported here meaningless.
// prefix is prepended to the field paths of the problems (for JSON held in
// one field, as in Avro events). spaced reports white space outside
// strings, so that a caller need not compact text that has none.
func checkStructure(data []byte, prefix string) (ps []Problem, tooDeep, spaced bool) {
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
	expectKey := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return []Problem{{path(""), fmt.Sprintf("nests deeper than %d levels of objects and arrays", MaxDepth)}}, true, spaced
			}
			f := scanFrame{object: c == '{', start: len(keys)}
			if n := len(stack); n > 0 && stack[n-1].object {
				f.name = stack[n-1].last
			}
			stack = append(stack, f)
			expectKey = c == '{'
		case '}', ']':
			if n := len(stack); n > 0 {
				keys = keys[:stack[n-1].start]
				stack = stack[:n-1]
			}
			expectKey = false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
		case ' ', '\n', '\t', '\r':
			spaced = true
		case '"':
			// The closing quote is the first one not escaped, that is
			// not preceded by an odd run of backslashes.
			j := i + 1
			for {
				q := bytes.IndexByte(data[j:], '"')
				if q < 0 {
					return ps, false, true // unterminated: the grammar check reports it
				}
				j += q
				bs := 0
				for k := j - 1; k > i && data[k] == '\\'; k-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
				j++
			}
			escaped := bytes.IndexByte(data[i+1:j], '\\') >= 0
			if expectKey && len(stack) > 0 {
				raw := data[i+1 : j]
				key := unsafe.String(unsafe.SliceData(raw), len(raw))
				if escaped {
					// Rare: "ph\u006fne" must count as "phone".
					var s string
					if json.Unmarshal(data[i:j+1], &s) == nil {
						key = s
					}
				}
				f := &stack[len(stack)-1]
				f.last = key
				k := scanKey{key: key, folded: foldKey(key)}
				if first, dup := f.lookup(keys[f.start:], k.folded); dup {
					if first == key {
						ps = append(ps, Problem{path(key), "duplicate key: JSON readers disagree on which copy counts"})
					} else {
						ps = append(ps, Problem{path(key), fmt.Sprintf("differs from key %q only in case: readers that ignore case (Go's encoding/json) would merge them", first)})
					}
				}
				keys = append(keys, k)
				f.index(keys[f.start:])
			}
			expectKey = false
			i = j
		}
	}
	if !utf8.Valid(data) {
		at := 0
		for at < len(data) {
			r, size := utf8.DecodeRune(data[at:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			at += size
		}
		ps = append(ps, Problem{prefix, fmt.Sprintf("invalid UTF-8 at byte %d: JSON text must be UTF-8", at)})
	}
	return ps, false, spaced
}

// scanFrame is one open object or array of checkStructure.
type scanFrame struct {
	object bool
	name   string // the key this container is the value of ("" in an array or at the root)
	last   string // the last key read, in an object
	start  int    // where this object's keys start in the key stack
	byFold map[string]string
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
