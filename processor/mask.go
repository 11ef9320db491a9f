package processor

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/text/unicode/norm"

	"github.com/firehose/firehose/schemas"
)

// Masker replaces personal data by rule. A value it cannot mask safely (an
// object where a string was expected, say) is replaced by "***" rather than
// passed through: an unmasked value must never reach the events topic.
//
// Rules match keys by their letters and digits alone, ignoring case and
// compatibility forms (maskKey): the rule lead_data.ssn masks "SSN",
// "ssn\u0000" and "S-S-N" too, and lead_data.email masks "emaıl" (dotless
// ı) and "ｅｍａｉｌ". A path that crosses an array applies to every
// element of it. Events with keys that are equal ignoring case in one
// object never get here: the decoder rejects them, so there is no copy of
// a value that a reader could prefer to the masked one; keys that differ
// otherwise but match one rule are all masked.
//
// A string where a rule expects an object or array (JSON text in
// metadata.contact, say) is read as JSON and masked inside, and stays a
// string; one that is not JSON text is replaced by "***".
type Masker struct {
	root  maskNode // children: the containers (lead_data, metadata, unknown top-level fields)
	rules int
	key   []byte
	// Masked counts values masked, for metrics.
	Masked func(n int)
}

// maskNode is one key of a rule path: a leaf masks the value there with
// its strategy; an inner node masks inside the value.
type maskNode struct {
	strategy string
	children []maskChild
}

type maskChild struct {
	folded string // the key by maskKey
	node   *maskNode
}

func (n *maskNode) child(key string) *maskNode {
	if len(n.children) == 0 {
		return nil
	}
	// Most keys are ASCII: compare them with the folded names byte by
	// byte, lowering and skipping what is not a letter or digit as it
	// goes, rather than fold each first.
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return n.childFolded(maskKey(key))
		}
	}
	for _, c := range n.children {
		// Folding only drops bytes: a longer name cannot match.
		if len(c.folded) <= len(key) && asciiFoldEqual(key, c.folded) {
			return c.node
		}
	}
	return nil
}

// maskKey is the form in which rule keys and event keys are compared:
// the key in Unicode compatibility form (NFKC: fullwidth and circled
// characters become plain ones), its letters and digits only (no NUL,
// no zero-width space, no separators), case-folded as the decoder folds
// keys, with the Turkish dotless and dotted i taken as i.
func maskKey(s string) string {
	s = norm.NFKC.String(s)
	b := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r == 'ı' || r == 'İ':
			b = append(b, 'i')
		case unicode.IsLetter(r) || unicode.IsNumber(r):
			b = append(b, r)
		}
	}
	return schemas.FoldKey(string(b))
}

func (n *maskNode) childFolded(folded string) *maskNode {
	for _, c := range n.children {
		if c.folded == folded {
			return c.node
		}
	}
	return nil
}

// asciiFoldEqual reports whether the ASCII key's letters and digits,
// lowered, are folded, a key by maskKey.
func asciiFoldEqual(key, folded string) bool {
	j := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		default:
			continue
		}
		if j == len(folded) || c != folded[j] {
			return false
		}
		j++
	}
	return j == len(folded)
}

// NewMasker compiles the rules in force (MaskConfig.MaskRules).
func NewMasker(c MaskConfig) (*Masker, error) {
	m := &Masker{key: []byte(c.HashKey)}
	for _, r := range c.MaskRules() {
		container, _, ok := strings.Cut(r.Path, ".")
		if !ok {
			return nil, fmt.Errorf("mask path %q has no field inside %q", r.Path, container)
		}
		if r.Strategy == "hash" && len(m.key) == 0 {
			return nil, fmt.Errorf("mask rule %s: the hash strategy needs processor.mask.hash_key", r.Path)
		}
		n := &m.root
		for _, seg := range strings.Split(r.Path, ".") {
			next := n.child(seg)
			if next == nil {
				next = &maskNode{}
				n.children = append(n.children, maskChild{folded: maskKey(seg), node: next})
			}
			n = next
		}
		// A rule on an object wins over rules inside it.
		n.strategy, n.children = r.Strategy, nil
		m.rules++
	}
	return m, nil
}

// Name implements Stage.
func (m *Masker) Name() string { return "mask" }

// Apply implements Stage: it masks e in place.
func (m *Masker) Apply(_ *kgo.Record, e *schemas.Event) (bool, error) {
	n := 0
	// mask returns the container with the rules applied, or nil when
	// nothing in it was masked. Containers are objects (the decoder
	// checks lead_data and metadata) or, for unknown fields, any value.
	mask := func(name string, raw json.RawMessage) json.RawMessage {
		node := m.root.child(name)
		if raw == nil || node == nil {
			return nil
		}
		out, c := m.walk(make([]byte, 0, len(raw)+16), raw, node)
		if c == 0 {
			return nil
		}
		n += c
		return out
	}
	if out := mask("lead_data", e.LeadData); out != nil {
		e.LeadData = out
	}
	if out := mask("metadata", e.Metadata); out != nil {
		e.Metadata = out
	}
	for i, f := range e.Extra {
		if out := mask(f.Name, f.JSON); out != nil {
			e.Extra[i].JSON = out
		}
	}
	if n > 0 && m.Masked != nil {
		m.Masked(n)
	}
	return true, nil
}

// walk appends v to out with the rules below node applied: in an object,
// to the keys that match node's children; in an array, to every element.
// It returns how many values it masked. v is text the decoder checked, so
// walk only finds where values end; its depth is bounded by the decoder
// (schemas.MaxDepth), so the recursion is too.
func (m *Masker) walk(out []byte, v []byte, node *maskNode) ([]byte, int) {
	n := 0
	switch kind(v) {
	case '{':
		out = append(out, '{')
		first := true
		for mb := range schemas.Members(v) {
			child := node.child(mb.Key)
			if child != nil && child.strategy == "drop" && kind(mb.Value) != 'n' {
				n++
				continue
			}
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, mb.RawKey...)
			out = append(out, ':')
			var c int
			switch {
			case child == nil:
				out = append(out, mb.Value...)
			case child.strategy != "":
				out, c = m.leaf(out, mb.Value, child.strategy)
			default:
				out, c = m.walk(out, mb.Value, child)
			}
			n += c
		}
		out = append(out, '}')
	case '[':
		out, n = eachElement(out, v, func(out []byte, el []byte) ([]byte, int) { return m.walk(out, el, node) })
	case '"':
		// A string where rules look inside: JSON text is masked as the
		// value it holds, anything else cannot be looked into.
		text := []byte(schemas.StringValue(v))
		if k := kind(bytes.TrimSpace(text)); (k == '{' || k == '[') && schemas.CheckedJSON(text) {
			var inner []byte
			inner, n = m.walk(nil, text, node)
			return schemas.AppendString(out, string(inner)), n
		}
		return append(out, `"***"`...), 1
	default:
		out = append(out, v...)
	}
	return out, n
}

// kind is the first byte of JSON value text: '{', '[', '"', 'n', 't', 'f',
// or the start of a number.
func kind(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// leaf appends the masked form of a value a rule names: a string or number
// masked by strategy, each element of an array masked alike, null kept,
// and anything else (an object, a boolean) "***", or its hash.
func (m *Masker) leaf(out []byte, v []byte, strategy string) ([]byte, int) {
	switch kind(v) {
	case 'n':
		return append(out, v...), 0
	case '[':
		return eachElement(out, v, func(out []byte, el []byte) ([]byte, int) { return m.leaf(out, el, strategy) })
	}
	// Masked values are short: most are built on the stack.
	var buf [64]byte
	masked := m.appendMasked(buf[:0], v, strategy)
	return schemas.AppendString(out, unsafe.String(unsafe.SliceData(masked), len(masked))), 1
}

// eachElement appends the JSON array v to out with each element written by
// fn, and adds up the values fn masked.
func eachElement(out []byte, v []byte, fn func(out []byte, el []byte) ([]byte, int)) ([]byte, int) {
	n := 0
	out = append(out, '[')
	first := true
	for el := range schemas.Elements(v) {
		if !first {
			out = append(out, ',')
		}
		first = false
		var c int
		out, c = fn(out, el)
		n += c
	}
	return append(out, ']'), n
}

// appendMasked appends the masked form of v by strategy, unquoted.
func (m *Masker) appendMasked(dst []byte, v []byte, strategy string) []byte {
	var s string
	switch c := kind(v); {
	case c == '"':
		s = schemas.StringValue(v)
	case c == '-' || '0' <= c && c <= '9':
		s = unsafe.String(unsafe.SliceData(v), len(v))
	default:
		if strategy == "hash" {
			return append(dst, m.Hash(string(v))...)
		}
		return append(dst, "***"...) // an object, array or boolean where a string was expected
	}
	switch strategy {
	case "last4":
		return appendLast4(dst, s)
	case "email":
		return appendEmail(dst, s)
	case "phone_area":
		return appendPhoneArea(dst, s)
	case "initial":
		return appendInitial(dst, s)
	case "hash":
		return append(dst, m.Hash(s)...)
	}
	return append(dst, "***"...)
}

// Hash returns the hex HMAC-SHA-256 of s under the masker's key: the same
// value always hashes the same, so masked values stay joinable.
func (m *Masker) Hash(s string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// MaskLast4 keeps the last four letters or digits and the separators, and
// stars the rest: 123-45-6789 becomes ***-**-6789. A value with four or
// fewer letters and digits is starred whole.
func MaskLast4(s string) string { return string(appendLast4(nil, s)) }

func appendLast4(dst []byte, s string) []byte {
	// Numbers of every kind count: circled and fullwidth digits are
	// digits to a reader.
	alnum := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			alnum++
		}
	}
	keepFrom := alnum - 4
	if alnum <= 4 {
		keepFrom = alnum
	}
	i := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			if i < keepFrom {
				dst = append(dst, '*')
			} else {
				dst = utf8.AppendRune(dst, r)
			}
			i++
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// MaskEmail keeps the first character of the local part and the domain:
// jane@example.com becomes j***@example.com. Without an @ it is ***.
func MaskEmail(s string) string { return string(appendEmail(nil, s)) }

func appendEmail(dst []byte, s string) []byte {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return append(dst, "***"...)
	}
	r, _ := utf8.DecodeRuneInString(s)
	dst = utf8.AppendRune(dst, r)
	dst = append(dst, "***"...)
	return append(dst, s[at:]...)
}

// MaskPhoneArea keeps the area code, the first three digits after an
// optional leading country code 1, and stars the other digits and any
// letters, keeping the punctuation: 412-087-5956 becomes 412-***-****. A
// value with fewer than seven digits is starred whole.
func MaskPhoneArea(s string) string { return string(appendPhoneArea(nil, s)) }

func appendPhoneArea(dst []byte, s string) []byte {
	digits := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	keep := 3
	skip := 0 // a leading country code 1 of an 11-digit number
	if digits == 11 && strings.TrimLeft(s, "+ (")[0:1] == "1" {
		skip = 1
	}
	if digits < 7 {
		keep, skip = 0, 0
	}
	i := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if i < skip || i-skip < keep {
				dst = utf8.AppendRune(dst, r)
			} else {
				dst = append(dst, '*')
			}
			i++
		} else if unicode.IsLetter(r) || unicode.IsNumber(r) {
			dst = append(dst, '*') // text or other digits in a phone field are not safe to keep
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// MaskInitial keeps the first letter only: Jane becomes J.
func MaskInitial(s string) string { return string(appendInitial(nil, s)) }

func appendInitial(dst []byte, s string) []byte {
	s = strings.TrimSpace(s)
	if s == "" {
		return dst
	}
	r, _ := utf8.DecodeRuneInString(s)
	return utf8.AppendRune(dst, r)
}
