package schemas

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Codec turns an Event into bytes and back. Implementations are safe for
// concurrent use.
type Codec interface {
	// Decode parses and validates one event. Its error is always an *Error.
	Decode(data []byte) (*Event, error)
	// Append appends the encoding of e to dst.
	Append(dst []byte, e *Event) ([]byte, error)
}

// JSON is the JSON codec: one JSON object per event.
type JSON struct {
	// Borrow makes Decode share memory with its input instead of copying
	// it: about a fifth faster, and safe only when the input is never
	// modified while the event is in use, as with Kafka record values. A
	// reused buffer (bufio.Scanner.Bytes, say) would silently change the
	// decoded event.
	Borrow bool
}

// Decode parses one JSON object, keeps unknown top-level fields in Extra and
// validates the result. Every problem is reported, not only the first.
//
// Beyond the schema, it rejects as ClassInvalid what JSON readers would
// read differently, so that what Firehose checks and masks is what every
// consumer sees: nesting deeper than MaxDepth, two keys of one object
// (at any depth) that are equal ignoring case, a top-level key that
// differs from a schema field only in case ("Lead_Data"), and invalid
// UTF-8.
//
// It reads the bytes once (scan), checking the grammar and the structure
// and reading the top-level fields in the same pass, and copies only the
// strings that have escapes: this sits on the hot path of every stage.
func (j JSON) Decode(data []byte) (*Event, error) {
	if !j.Borrow {
		data = bytes.Clone(data)
	}
	if len(data) >= 5 && data[0] == 0 {
		// Confluent's serializers frame a payload: magic byte 0, then a
		// 4-byte big-endian schema id. Say so: "invalid character
		// '\x00'" would send the producer looking in the wrong place.
		id := uint32(data[1])<<24 | uint32(data[2])<<16 | uint32(data[3])<<8 | uint32(data[4])
		return nil, decodeError(fmt.Errorf("the value has Confluent Schema Registry framing (magic byte 0, schema id %d), but this topic's encoding is plain JSON: produce plain JSON, without a Schema Registry serializer", id))
	}
	// The event's strings and raw objects share data's memory: a copy
	// made above, or the caller's borrowed bytes. The fields are read as
	// scan meets them; whether the white space must go from the objects
	// is known only at the end.
	e := new(Event)
	var ps []Problem
	var haveSeq bool
	type object struct {
		dst *json.RawMessage
		raw []byte
	}
	var objectsArr [4]object
	objects := objectsArr[:0]
	obj := func(m member, dst *json.RawMessage) {
		switch m.kind {
		case kindNull:
		case kindObject:
			objects = append(objects, object{dst, m.raw})
		default:
			ps = append(ps, Problem{m.key, "must be an object, got " + kindName(m.kind)})
		}
	}
	var extra []member
	r := scan(data, "", true, func(m member) {
		k := m.key
		if known, ok := e.setString(m); known {
			if !ok {
				ps = append(ps, Problem{k, "must be a string, got " + kindName(m.kind)})
			}
			return
		}
		switch k {
		case "timestamp":
			switch m.kind {
			case kindNull:
			case kindString:
				s := m.text()
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					ps = append(ps, Problem{k, fmt.Sprintf("must be RFC 3339 (2024-01-15T14:30:45.234Z), got %q", s)})
					break
				}
				e.Timestamp = t.UTC()
			default:
				ps = append(ps, Problem{k, "must be an RFC 3339 string, got " + kindName(m.kind)})
			}
		case "sequence":
			if m.kind == kindNull {
				break
			}
			n, err := integer(m)
			if err != nil {
				ps = append(ps, Problem{k, err.Error()})
				break
			}
			e.Sequence, haveSeq = n, true
		case "duration_ms":
			if m.kind == kindNull {
				break
			}
			n, err := integer(m)
			if err != nil {
				ps = append(ps, Problem{k, err.Error()})
				break
			}
			e.DurationMS = &n
		case "metadata":
			obj(m, &e.Metadata)
		case "lead_data":
			obj(m, &e.LeadData)
		default:
			if _, known := order[foldKey(k)]; known {
				ps = append(ps, Problem{k, "differs from a schema field only in case: field names are case-sensitive"})
				break
			}
			extra = append(extra, m)
		}
	})
	if r.tooDeep {
		return nil, &Error{Class: ClassInvalid, Problems: r.problems}
	}
	if !r.valid {
		var v any
		err := json.Unmarshal(data, &v) // only for its precise message
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, decodeError(fmt.Errorf("not a JSON object: %w", err))
	}
	if r.root != kindObject {
		return nil, decodeError(fmt.Errorf("not a JSON object: %s", kindName(r.root)))
	}
	for _, o := range objects {
		*o.dst = compactIf(r.spaced, o.raw)
	}
	if len(extra) > 0 {
		e.Extra = make(Fields, len(extra))
		for i, m := range extra {
			e.Extra[i] = Field{m.key, compactIf(r.spaced, m.raw)}
		}
		slices.SortFunc(e.Extra, compareFields) // keys are unique: scan checked
	}
	ps = append(r.problems, ps...)
	if !haveSeq && !hasProblem(ps, "sequence") {
		ps = append(ps, Problem{"sequence", "required"})
	}
	if err := e.Validate(); err != nil {
		for _, p := range err.(*Error).Problems {
			if !hasProblem(ps, p.Field) {
				ps = append(ps, p)
			}
		}
	}
	if len(ps) > 0 {
		slices.SortStableFunc(ps, func(a, b Problem) int { return fieldOrder(a.Field) - fieldOrder(b.Field) })
		ps = slices.CompactFunc(ps, func(a, b Problem) bool { return a == b })
		return nil, &Error{Class: ClassInvalid, Problems: ps}
	}
	return e, nil
}

// Append writes e as one compact JSON object with the schema's fields in a
// fixed order and Extra's fields after them, sorted by name, so the same
// event always encodes to the same bytes.
func (j JSON) Append(dst []byte, e *Event) ([]byte, error) {
	return AppendJSON(dst, e, nil), nil
}

// AppendJSON is JSON.Append with extra fields appended at the end of the
// object, in the order given; connectors use it to add firehose_metadata
// without copying the event.
func AppendJSON(dst []byte, e *Event, more []Field) []byte {
	dst = append(dst, `{"event_id":`...)
	dst = appendString(dst, e.EventID)
	dst = append(dst, `,"timestamp":"`...)
	dst = AppendTimestamp(dst, e.Timestamp)
	dst = append(dst, `","account_id":`...)
	dst = appendString(dst, e.AccountID)
	dst = append(dst, `,"resource_id":`...)
	dst = appendString(dst, e.ResourceID)
	dst = append(dst, `,"sequence":`...)
	dst = strconv.AppendInt(dst, e.Sequence, 10)
	dst = append(dst, `,"event_type":`...)
	dst = appendString(dst, e.EventType)
	opt := func(name, v string) {
		if v != "" {
			dst = append(dst, ',', '"')
			dst = append(dst, name...)
			dst = append(dst, '"', ':')
			dst = appendString(dst, v)
		}
	}
	opt("resource_type", e.ResourceType)
	opt("flow_id", e.FlowID)
	opt("lead_id", e.LeadID)
	opt("entity_type", e.EntityType)
	opt("entity_id", e.EntityID)
	opt("outcome", e.Outcome)
	if e.DurationMS != nil {
		dst = append(dst, `,"duration_ms":`...)
		dst = strconv.AppendInt(dst, *e.DurationMS, 10)
	}
	if e.Metadata != nil {
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, e.Metadata...)
	}
	if e.LeadData != nil {
		dst = append(dst, `,"lead_data":`...)
		dst = append(dst, e.LeadData...)
	}
	for _, f := range e.Extra.sorted() {
		dst = append(dst, ',')
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		dst = append(dst, f.JSON...)
	}
	for _, f := range more {
		dst = append(dst, ',')
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		dst = append(dst, f.JSON...)
	}
	return append(dst, '}')
}

// AppendField appends the value of e's top-level field name as AppendJSON
// writes it, and reports whether AppendJSON writes that field at all: what
// reads a few fields (a transform that selects them) need not encode the
// rest.
func AppendField(dst []byte, e *Event, name string) ([]byte, bool) {
	if p := e.stringPtr(name); p != nil {
		switch name {
		case "event_id", "account_id", "resource_id", "event_type":
		default:
			if *p == "" {
				return dst, false
			}
		}
		return appendString(dst, *p), true
	}
	switch name {
	case "timestamp":
		dst = append(dst, '"')
		return append(AppendTimestamp(dst, e.Timestamp), '"'), true
	case "sequence":
		return strconv.AppendInt(dst, e.Sequence, 10), true
	case "duration_ms":
		if e.DurationMS == nil {
			return dst, false
		}
		return strconv.AppendInt(dst, *e.DurationMS, 10), true
	case "metadata":
		return append(dst, e.Metadata...), e.Metadata != nil
	case "lead_data":
		return append(dst, e.LeadData...), e.LeadData != nil
	}
	for _, f := range e.Extra {
		if f.Name == name {
			return append(dst, f.JSON...), true
		}
	}
	return dst, false
}

// Field is a named JSON value: an event's field the schema does not name,
// or one to add to an encoded event.
type Field struct {
	Name string
	JSON []byte // valid, compact JSON
}

// Fields are an event's top-level fields that the schema does not name,
// sorted by name, each name once. A sorted slice rather than a map: an
// event has few of them (often only the processor's enrichment), and a map
// cost each event an allocation, hashing and a sort to encode.
type Fields []Field

// MakeFields returns fs as Fields: sorted, and the last of each name kept.
func MakeFields(fs ...Field) Fields {
	var out Fields
	for _, f := range fs {
		out.Set(f.Name, f.JSON)
	}
	return out
}

// Get returns the value of the field called name, or nil when there is
// none (a field's value is never empty).
func (fs Fields) Get(name string) []byte {
	for _, f := range fs {
		if f.Name == name {
			return f.JSON
		}
	}
	return nil
}

// Set sets the field called name to v, keeping fs sorted.
func (fs *Fields) Set(name string, v []byte) {
	i, found := slices.BinarySearchFunc(*fs, name, func(f Field, name string) int { return strings.Compare(f.Name, name) })
	if found {
		(*fs)[i].JSON = v
		return
	}
	*fs = slices.Insert(*fs, i, Field{name, v})
}

// Delete removes the field called name; fs becomes nil when it was the
// last.
func (fs *Fields) Delete(name string) {
	*fs = slices.DeleteFunc(*fs, func(f Field) bool { return f.Name == name })
	if len(*fs) == 0 {
		*fs = nil
	}
}

// AppendObject appends fs as one JSON object, its fields sorted by name.
func (fs Fields) AppendObject(dst []byte) []byte {
	dst = append(dst, '{')
	for i, f := range fs.sorted() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		dst = append(dst, f.JSON...)
	}
	return append(dst, '}')
}

// sorted returns fs sorted by name: fs itself when it is (as decoders and
// Set keep it), else a sorted copy, for events built by hand.
func (fs Fields) sorted() Fields {
	if slices.IsSortedFunc(fs, compareFields) {
		return fs
	}
	return slices.SortedFunc(slices.Values(fs), compareFields)
}

func compareFields(a, b Field) int { return strings.Compare(a.Name, b.Name) }

var order = map[string]int{
	"event_id": 1, "timestamp": 2, "account_id": 3, "resource_id": 4, "sequence": 5,
	"event_type": 6, "resource_type": 7, "flow_id": 8, "lead_id": 9, "entity_type": 10,
	"entity_id": 11, "outcome": 12, "duration_ms": 13, "metadata": 14, "lead_data": 15,
}

func fieldOrder(f string) int {
	if n, ok := order[f]; ok {
		return n
	}
	return 100
}

func hasProblem(ps []Problem, field string) bool {
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}

func integer(m member) (int64, error) {
	if m.kind != kindNumber {
		return 0, fmt.Errorf("must be an integer, got %s", kindName(m.kind))
	}
	n, err := strconv.ParseInt(string(m.raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("must be a 64-bit integer, got %s", m.raw)
	}
	return n, nil
}

// compactIf is compact for a document that has white space outside its
// strings, and shares raw's memory otherwise.
func compactIf(spaced bool, raw []byte) json.RawMessage {
	if spaced {
		return compact(unsafe.String(unsafe.SliceData(raw), len(raw)))
	}
	return raw[:len(raw):len(raw)]
}

// compact returns raw (valid JSON) without insignificant white space,
// copying it; most producers send compact JSON, which is copied as is.
func compact(raw string) json.RawMessage {
	if !hasSpace(raw) {
		// Share raw's memory, capped so an append cannot write into it.
		return unsafe.Slice(unsafe.StringData(raw), len(raw))[:len(raw):len(raw)]
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, []byte(raw)); err != nil {
		return json.RawMessage(raw) // valid by construction; keep it as it is
	}
	return b.Bytes()
}

// hasSpace reports whether JSON text has white space outside its strings.
func hasSpace(raw string) bool {
	in := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			return true
		}
	}
	return false
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the output is always valid JSON.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i < len(s) && !escapeStop[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// escapeStop marks the bytes appendString must look at: those it escapes,
// and the first bytes of multi-byte UTF-8 sequences, which it checks.
var escapeStop = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf
	}
	return t
}()

// Resolver is a Codec that must look something up (a schema in a
// registry) before it can decode some values. Stages that decode records
// call Resolve with a poll's values first; Resolve retries a lookup that
// fails for a transient reason until ctx ends, so that an outage delays
// events instead of rejecting them.
type Resolver interface {
	Resolve(ctx context.Context, values iter.Seq[[]byte]) error
}

// Resolve calls c.Resolve when c is a Resolver, and otherwise does nothing.
func Resolve(ctx context.Context, c Codec, values iter.Seq[[]byte]) error {
	if r, ok := c.(Resolver); ok {
		return r.Resolve(ctx, values)
	}
	return nil
}
