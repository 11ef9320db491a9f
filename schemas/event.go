// Package schemas defines the Firehose Event, its JSON and Avro codecs and
// its validation. It has no Kafka dependency: every stage that touches an
// event's bytes goes through here.
package schemas

import (
	_ "embed"
	"encoding/json"
	"strconv"
	"time"
)

// AvroSchema is the Avro schema of an Event (schemas/event.avsc).
//
//go:embed event.avsc
var AvroSchema string

// TimestampLayout is how Firehose writes event timestamps: RFC 3339 in UTC
// with exactly three fractional digits.
const TimestampLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendTimestamp appends t in UTC as TimestampLayout does, in a fraction
// of AppendFormat's time: every event written goes through it.
func AppendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimestampLayout)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	two := func(dst []byte, n int) []byte { return append(dst, byte('0'+n/10), byte('0'+n%10)) }
	dst = two(dst, year/100)
	dst = two(dst, year%100)
	dst = append(dst, '-')
	dst = two(dst, int(month))
	dst = append(dst, '-')
	dst = two(dst, day)
	dst = append(dst, 'T')
	dst = two(dst, hour)
	dst = append(dst, ':')
	dst = two(dst, minute)
	dst = append(dst, ':')
	dst = two(dst, sec)
	return append(dst, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// Event is one event about one resource. Events of a resource are ordered by
// Sequence; Kafka records carrying them are keyed by ResourceID.
//
// Metadata, LeadData and the values of Extra hold compact JSON text exactly
// as it arrived (minus insignificant white space). Extra keeps every
// top-level field the schema does not name, so a producer's additions pass
// through Firehose untouched.
type Event struct {
	EventID      string
	Timestamp    time.Time
	AccountID    string
	ResourceID   string
	Sequence     int64
	EventType    string
	ResourceType string
	FlowID       string
	LeadID       string
	EntityType   string
	EntityID     string
	Outcome      string
	DurationMS   *int64
	Metadata     json.RawMessage
	LeadData     json.RawMessage
	Extra        Fields
}

// StringField returns the value of a top-level string field by its JSON
// name, and whether the name is one. Templates and filters use it to read
// fields without reflection.
func (e *Event) StringField(name string) (string, bool) {
	if p := e.stringPtr(name); p != nil {
		return *p, true
	}
	switch name {
	case "timestamp":
		return e.Timestamp.UTC().Format(TimestampLayout), true
	case "sequence":
		return strconv.FormatInt(e.Sequence, 10), true
	}
	return "", false
}

// stringPtr returns the field of e that the JSON string field name holds,
// or nil when name is not one: the one list the decoders and StringField
// share.
func (e *Event) stringPtr(name string) *string {
	switch name {
	case "event_id":
		return &e.EventID
	case "account_id":
		return &e.AccountID
	case "resource_id":
		return &e.ResourceID
	case "event_type":
		return &e.EventType
	case "resource_type":
		return &e.ResourceType
	case "flow_id":
		return &e.FlowID
	case "lead_id":
		return &e.LeadID
	case "entity_type":
		return &e.EntityType
	case "entity_id":
		return &e.EntityID
	case "outcome":
		return &e.Outcome
	}
	return nil
}

// setString sets the string field that member m names. known is false
// when m names none; ok is false when its value is neither a string nor
// null (null leaves the field empty).
func (e *Event) setString(m member) (known, ok bool) {
	p := e.stringPtr(m.key)
	if p == nil {
		return false, false
	}
	switch m.kind {
	case kindNull:
	case kindString:
		*p = m.text()
	default:
		return true, false
	}
	return true, true
}

// IsField reports whether name is a top-level field of the event schema.
func IsField(name string) bool {
	_, ok := order[name]
	return ok
}
