package processor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/schemas"
)

// Masker replaces personal data by rule. A value it cannot mask safely (an
// object where a string was expected, say) is replaced by "***" rather than
// passed through: an unmasked value must never reach the events topic.
type Masker struct {
	rules  []maskRule
	groups []maskGroup
	key    []byte
	// Masked counts values masked, for metrics.
	Masked func(n int)
}

// maskGroup is the rules of one container: those on its direct fields are
// applied in one pass over the object; deeper ones one by one.
type maskGroup struct {
	container string
	direct    map[string]string // field -> strategy
	nested    []maskRule
}

type maskRule struct {
	container string // metadata, lead_data, or an unknown top-level field
	sub       string // gjson/sjson path inside it
	strategy  string
}

// NewMasker compiles the rules in force (config.Mask.MaskRules).
func NewMasker(c config.Mask) (*Masker, error) {
	m := &Masker{key: []byte(c.HashKey)}
	for _, r := range c.MaskRules() {
		container, sub, ok := strings.Cut(r.Path, ".")
		if !ok {
			return nil, fmt.Errorf("mask path %q has no field inside %q", r.Path, container)
		}
		if r.Strategy == "hash" && len(m.key) == 0 {
			return nil, fmt.Errorf("mask rule %s: the hash strategy needs processor.mask.hash_key", r.Path)
		}
		m.rules = append(m.rules, maskRule{container: container, sub: sub, strategy: r.Strategy})
		i := slices.IndexFunc(m.groups, func(g maskGroup) bool { return g.container == container })
		if i < 0 {
			m.groups = append(m.groups, maskGroup{container: container, direct: map[string]string{}})
			i = len(m.groups) - 1
		}
		if strings.Contains(sub, ".") {
			m.groups[i].nested = append(m.groups[i].nested, m.rules[len(m.rules)-1])
		} else {
			m.groups[i].direct[sub] = r.Strategy
		}
	}
	return m, nil
}

// Name implements Stage.
func (m *Masker) Name() string { return "mask" }

// Apply implements Stage: it masks e in place.
func (m *Masker) Apply(_ *kgo.Record, e *schemas.Event) (bool, error) {
	n := 0
	for _, g := range m.groups {
		var raw json.RawMessage
		switch g.container {
		case "lead_data":
			raw = e.LeadData
		case "metadata":
			raw = e.Metadata
		default:
			raw = e.Extra[g.container]
		}
		if raw == nil {
			continue
		}
		changed := 0
		if len(g.direct) > 0 {
			raw, changed = m.rewrite(raw, g.direct)
		}
		for _, r := range g.nested {
			out, ok, err := m.apply(raw, r)
			if err != nil {
				return false, fmt.Errorf("mask %s.%s: %w", r.container, r.sub, err)
			}
			if ok {
				raw = out
				changed++
			}
		}
		if changed == 0 {
			continue
		}
		n += changed
		switch g.container {
		case "lead_data":
			e.LeadData = raw
		case "metadata":
			e.Metadata = raw
		default:
			e.Extra[g.container] = raw
		}
	}
	if n > 0 && m.Masked != nil {
		m.Masked(n)
	}
	return true, nil
}

// rewrite masks the direct fields of the JSON object raw named in rules,
// in one pass, and returns the new object and how many values changed. A
// non-object is replaced by "***" if any rule could apply to it.
func (m *Masker) rewrite(raw json.RawMessage, rules map[string]string) (json.RawMessage, int) {
	obj := gjson.ParseBytes(raw)
	if !obj.IsObject() {
		return raw, 0
	}
	out := make([]byte, 0, len(raw)+16)
	out = append(out, '{')
	n := 0
	obj.ForEach(func(k, v gjson.Result) bool {
		strategy, ok := rules[k.Str]
		if ok && v.Type != gjson.Null {
			n++
			if strategy == "drop" {
				return true
			}
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, k.Raw...)
		out = append(out, ':')
		if ok && v.Type != gjson.Null {
			out = schemas.AppendString(out, m.maskValue(v, strategy))
		} else {
			out = append(out, v.Raw...)
		}
		return true
	})
	if n == 0 {
		return raw, 0
	}
	return append(out, '}'), n
}

// apply masks the value at r.sub of the JSON object raw, returning the new
// object and whether anything changed. raw is not modified.
func (m *Masker) apply(raw json.RawMessage, r maskRule) (json.RawMessage, bool, error) {
	v := gjson.GetBytes(raw, r.sub)
	if !v.Exists() || v.Type == gjson.Null {
		return nil, false, nil
	}
	var out []byte
	var err error
	if r.strategy == "drop" {
		out, err = sjson.DeleteBytes(raw, r.sub)
	} else {
		out, err = sjson.SetBytes(raw, r.sub, m.maskValue(v, r.strategy))
	}
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func (m *Masker) maskValue(v gjson.Result, strategy string) string {
	var s string
	switch v.Type {
	case gjson.String:
		s = v.Str
	case gjson.Number:
		s = v.Raw
	default:
		if strategy == "hash" {
			return m.Hash(v.Raw)
		}
		return "***" // an object, array or boolean where a string was expected
	}
	switch strategy {
	case "last4":
		return MaskLast4(s)
	case "email":
		return MaskEmail(s)
	case "phone_area":
		return MaskPhoneArea(s)
	case "initial":
		return MaskInitial(s)
	case "hash":
		return m.Hash(s)
	}
	return "***"
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
func MaskLast4(s string) string {
	alnum := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			alnum++
		}
	}
	keepFrom := alnum - 4
	if alnum <= 4 {
		keepFrom = alnum
	}
	var b strings.Builder
	i := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if i < keepFrom {
				b.WriteByte('*')
			} else {
				b.WriteRune(r)
			}
			i++
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// MaskEmail keeps the first character of the local part and the domain:
// jane@example.com becomes j***@example.com. Without an @ it is ***.
func MaskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "***"
	}
	r, _ := utf8.DecodeRuneInString(s)
	return string(r) + "***" + s[at:]
}

// MaskPhoneArea keeps the area code, the first three digits after an
// optional leading country code 1, and stars the other digits and any
// letters, keeping the punctuation: 412-087-5956 becomes 412-***-****. A
// value with fewer than seven digits is starred whole.
func MaskPhoneArea(s string) string {
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
	var b strings.Builder
	i := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if i < skip || i-skip < keep {
				b.WriteRune(r)
			} else {
				b.WriteByte('*')
			}
			i++
		} else if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteByte('*') // text in a phone field is not safe to keep
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// MaskInitial keeps the first letter only: Jane becomes J.
func MaskInitial(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	r, _ := utf8.DecodeRuneInString(s)
	return string(r)
}
