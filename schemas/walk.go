package schemas

import (
	"bytes"
	"iter"
	"unsafe"
)

// Member is one member of a JSON object read by Members.
type Member struct {
	Key    string // unescaped; shares the text's memory when it has no escapes
	RawKey []byte // the key as written, quotes included
	Value  []byte // the value's text
}

// Members iterates over the members of JSON object text that a decoder of
// this package produced (an event's metadata, lead_data or extra fields),
// without checking it again: it only finds where each key and value ends.
// Text that is not a valid object ends the iteration early, at worst; it
// never panics.
func Members(obj []byte) iter.Seq[Member] {
	return func(yield func(Member) bool) {
		i := skipSpace(obj, 0)
		if i >= len(obj) || obj[i] != '{' {
			return
		}
		for i++; ; i++ {
			i = skipSpace(obj, i)
			if i >= len(obj) || obj[i] != '"' {
				return // '}' or not an object
			}
			end, escaped, ok := stringEnd(obj, i)
			if !ok {
				return
			}
			m := Member{RawKey: obj[i : end+1 : end+1]}
			if escaped {
				m.Key = unquote(m.RawKey)
			} else {
				raw := obj[i+1 : end]
				m.Key = unsafe.String(unsafe.SliceData(raw), len(raw))
			}
			i = skipSpace(obj, end+1)
			if i >= len(obj) || obj[i] != ':' {
				return
			}
			i = skipSpace(obj, i+1)
			vend := valueEnd(obj, i)
			if vend <= i {
				return
			}
			m.Value = obj[i:vend:vend]
			if !yield(m) {
				return
			}
			i = skipSpace(obj, vend)
			if i >= len(obj) || obj[i] != ',' {
				return
			}
		}
	}
}

// Elements iterates over the elements of JSON array text as Members does
// over an object's members.
func Elements(arr []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		i := skipSpace(arr, 0)
		if i >= len(arr) || arr[i] != '[' {
			return
		}
		for i++; ; i++ {
			i = skipSpace(arr, i)
			end := valueEnd(arr, i)
			if end <= i || !yield(arr[i:end:end]) {
				return
			}
			i = skipSpace(arr, end)
			if i >= len(arr) || arr[i] != ',' {
				return
			}
		}
	}
}

// StringValue returns the value of JSON string text, unescaped, and ""
// for other text.
func StringValue(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	return member{raw: v, kind: kindString, escaped: bytes.IndexByte(v, '\\') >= 0}.text()
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns where the value starting at data[i] ends, or i when
// there is none.
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		end, _, ok := stringEnd(data, i)
		if !ok {
			return i
		}
		return end + 1
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _, ok := stringEnd(data, j)
				if !ok {
					return i
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return i
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\n', '\t', '\r':
			return j
		}
		j++
	}
	return j
}

// TopMembers checks, in one iterative pass, that data is one JSON value
// (RFC 8259) that nests no deeper than MaxDepth, and calls fn with each
// member of it when it is an object, in order, as it is read: before the
// rest of the text is checked, so what fn finds counts only when
// TopMembers returns true. It checks nothing beyond that (not repeated
// keys, not UTF-8). key and value share data's memory.
func TopMembers(data []byte, fn func(key string, value []byte)) bool {
	r := scan(data, "", false, func(m member) { fn(m.key, m.raw) })
	return r.valid
}
