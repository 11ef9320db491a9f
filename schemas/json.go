package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
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
type JSON struct{}

// Decode parses one JSON object, keeps unknown top-level fields in Extra and
// validates the result. Every problem is reported, not only the first.
func (JSON) Decode(data []byte) (*Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, decodeError(fmt.Errorf("not a JSON object: %w", err))
	}
	if fields == nil {
		return nil, decodeError(errors.New("not a JSON object: null"))
	}
	e := new(Event)
	var ps []Problem
	var haveSeq bool
	str := func(name string, raw json.RawMessage, dst *string) {
		if isNull(raw) {
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			ps = append(ps, Problem{name, "must be a string, got " + jsonKind(raw)})
		}
	}
	obj := func(name string, raw json.RawMessage, dst *json.RawMessage) {
		if isNull(raw) {
			return
		}
		if jsonKind(raw) != "object" {
			ps = append(ps, Problem{name, "must be an object, got " + jsonKind(raw)})
			return
		}
		*dst = compact(raw)
	}
	for k, raw := range fields {
		switch k {
		case "event_id":
			str(k, raw, &e.EventID)
		case "account_id":
			str(k, raw, &e.AccountID)
		case "resource_id":
			str(k, raw, &e.ResourceID)
		case "event_type":
			str(k, raw, &e.EventType)
		case "resource_type":
			str(k, raw, &e.ResourceType)
		case "flow_id":
			str(k, raw, &e.FlowID)
		case "lead_id":
			str(k, raw, &e.LeadID)
		case "entity_type":
			str(k, raw, &e.EntityType)
		case "entity_id":
			str(k, raw, &e.EntityID)
		case "outcome":
			str(k, raw, &e.Outcome)
		case "timestamp":
			var s string
			if isNull(raw) {
				break
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				ps = append(ps, Problem{k, "must be an RFC 3339 string, got " + jsonKind(raw)})
				break
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				ps = append(ps, Problem{k, fmt.Sprintf("must be RFC 3339 (2024-01-15T14:30:45.234Z), got %q", s)})
				break
			}
			e.Timestamp = t.UTC()
		case "sequence":
			if isNull(raw) {
				break
			}
			n, err := integer(raw)
			if err != nil {
				ps = append(ps, Problem{k, err.Error()})
				break
			}
			e.Sequence, haveSeq = n, true
		case "duration_ms":
			if isNull(raw) {
				break
			}
			n, err := integer(raw)
			if err != nil {
				ps = append(ps, Problem{k, err.Error()})
				break
			}
			e.DurationMS = &n
		case "metadata":
			obj(k, raw, &e.Metadata)
		case "lead_data":
			obj(k, raw, &e.LeadData)
		default:
			if e.Extra == nil {
				e.Extra = make(map[string]json.RawMessage)
			}
			e.Extra[k] = compact(raw)
		}
	}
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
		return nil, &Error{Class: ClassInvalid, Problems: ps}
	}
	return e, nil
}

// Append writes e as one compact JSON object with the schema's fields in a
// fixed order and Extra's fields after them, sorted by name, so the same
// event always encodes to the same bytes.
func (JSON) Append(dst []byte, e *Event) ([]byte, error) {
	return AppendJSON(dst, e, nil), nil
}

// AppendJSON is JSON.Append with extra fields appended at the end of the
// object, in the order given; connectors use it to add firehose_metadata
// without copying the event.
func AppendJSON(dst []byte, e *Event, more []Field) []byte {
	dst = append(dst, `{"event_id":`...)
	dst = appendString(dst, e.EventID)
	dst = append(dst, `,"timestamp":"`...)
	dst = e.Timestamp.UTC().AppendFormat(dst, TimestampLayout)
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
	if len(e.Extra) > 0 {
		keys := make([]string, 0, len(e.Extra))
		for k := range e.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = append(dst, ',')
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = append(dst, e.Extra[k]...)
		}
	}
	for _, f := range more {
		dst = append(dst, ',')
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		dst = append(dst, f.JSON...)
	}
	return append(dst, '}')
}

// Field is a named JSON value to add to an encoded event.
type Field struct {
	Name string
	JSON []byte // valid, compact JSON
}

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

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func integer(raw json.RawMessage) (int64, error) {
	if jsonKind(raw) != "number" {
		return 0, fmt.Errorf("must be an integer, got %s", jsonKind(raw))
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("must be a 64-bit integer, got %s", raw)
	}
	return n, nil
}

func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		// raw came out of json.Unmarshal, so it is valid JSON.
		return bytes.Clone(raw)
	}
	return b.Bytes()
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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
