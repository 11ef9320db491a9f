package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/tidwall/gjson"
)

// Avro is the Avro single-object codec (a 0xC3 0x01 marker, the schema's
// CRC-64-AVRO fingerprint, then the binary record) over schemas/event.avsc.
// metadata, lead_data and extra travel as JSON object text.
type Avro struct{}

var avroCodec = sync.OnceValues(func() (*goavro.Codec, error) {
	return goavro.NewCodec(AvroSchema)
})

// AvroCodec returns the goavro codec of the event schema, for encoders that
// write Avro object container files.
func AvroCodec() (*goavro.Codec, error) { return avroCodec() }

// Decode parses one single-object encoded event and validates it.
func (Avro) Decode(data []byte) (*Event, error) {
	c, err := avroCodec()
	if err != nil {
		return nil, decodeError(err)
	}
	native, _, err := c.NativeFromSingle(data)
	if err != nil {
		return nil, decodeError(fmt.Errorf("not an Avro single-object event: %w", err))
	}
	e, err := FromAvroNative(native)
	if err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Append appends e in Avro single-object encoding.
func (Avro) Append(dst []byte, e *Event) ([]byte, error) {
	c, err := avroCodec()
	if err != nil {
		return dst, err
	}
	native, err := AvroNative(e)
	if err != nil {
		return dst, err
	}
	return c.SingleFromNative(dst, native)
}

// AvroNative returns e in goavro's native form for the event schema.
func AvroNative(e *Event) (map[string]any, error) {
	optStr := func(s string) any {
		if s == "" {
			return nil
		}
		return goavro.Union("string", s)
	}
	optJSON := func(raw json.RawMessage) any {
		if raw == nil {
			return nil
		}
		return goavro.Union("string", string(raw))
	}
	m := map[string]any{
		"event_id":      e.EventID,
		"timestamp":     e.Timestamp.UTC(),
		"account_id":    e.AccountID,
		"resource_id":   e.ResourceID,
		"sequence":      e.Sequence,
		"event_type":    e.EventType,
		"resource_type": optStr(e.ResourceType),
		"flow_id":       optStr(e.FlowID),
		"lead_id":       optStr(e.LeadID),
		"entity_type":   optStr(e.EntityType),
		"entity_id":     optStr(e.EntityID),
		"outcome":       optStr(e.Outcome),
		"duration_ms":   nil,
		"metadata":      optJSON(e.Metadata),
		"lead_data":     optJSON(e.LeadData),
		"extra":         nil,
	}
	if e.DurationMS != nil {
		m["duration_ms"] = goavro.Union("long", *e.DurationMS)
	}
	if len(e.Extra) > 0 {
		b, err := json.Marshal(e.Extra)
		if err != nil {
			return nil, fmt.Errorf("encode extra fields: %w", err)
		}
		m["extra"] = goavro.Union("string", string(b))
	}
	return m, nil
}

// FromAvroNative converts goavro's native form of the event schema back
// into an Event. It does not validate.
func FromAvroNative(native any) (*Event, error) {
	m, ok := native.(map[string]any)
	if !ok {
		return nil, decodeError(fmt.Errorf("avro datum is %T, not a record", native))
	}
	e := new(Event)
	var ps []Problem
	str := func(k string) string { s, _ := m[k].(string); return s }
	opt := func(k string) any {
		u, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		for _, v := range u {
			return v
		}
		return nil
	}
	optStr := func(k string) string { s, _ := opt(k).(string); return s }
	optJSON := func(k string) json.RawMessage {
		s, ok := opt(k).(string)
		if !ok {
			return nil
		}
		structure, tooDeep, _ := checkStructure([]byte(s), k)
		ps = append(ps, structure...)
		if tooDeep {
			return nil
		}
		if !gjson.Valid(s) || !gjson.Parse(s).IsObject() {
			ps = append(ps, Problem{k, "must hold JSON object text"})
			return nil
		}
		return compact(s)
	}
	e.EventID = str("event_id")
	e.Timestamp, _ = m["timestamp"].(time.Time)
	e.Timestamp = e.Timestamp.UTC()
	e.AccountID = str("account_id")
	e.ResourceID = str("resource_id")
	e.Sequence, _ = m["sequence"].(int64)
	e.EventType = str("event_type")
	e.ResourceType = optStr("resource_type")
	e.FlowID = optStr("flow_id")
	e.LeadID = optStr("lead_id")
	e.EntityType = optStr("entity_type")
	e.EntityID = optStr("entity_id")
	e.Outcome = optStr("outcome")
	if n, ok := opt("duration_ms").(int64); ok {
		e.DurationMS = &n
	}
	e.Metadata = optJSON("metadata")
	e.LeadData = optJSON("lead_data")
	if extra := optJSON("extra"); extra != nil {
		if err := json.Unmarshal(extra, &e.Extra); err != nil {
			ps = append(ps, Problem{"extra", err.Error()})
		}
		for k, v := range e.Extra {
			if _, known := order[k]; known {
				ps = append(ps, Problem{"extra", "holds schema field " + k})
			}
			e.Extra[k] = compact(string(v))
		}
	}
	if len(ps) > 0 {
		return nil, &Error{Class: ClassInvalid, Problems: ps}
	}
	return e, nil
}

// CodecFor returns the codec for an encoding name from config: "json" or
// "avro".
func CodecFor(encoding string) (Codec, error) {
	switch encoding {
	case "", "json":
		return JSON{}, nil
	case "avro":
		if _, err := avroCodec(); err != nil {
			return nil, err
		}
		return Avro{}, nil
	}
	return nil, errors.New(`unknown encoding ` + encoding + ` (want "json" or "avro")`)
}

// RecordCodecFor is CodecFor for decoding Kafka record values, which are
// never modified once fetched: the JSON codec borrows their memory.
func RecordCodecFor(encoding string) (Codec, error) {
	c, err := CodecFor(encoding)
	if _, ok := c.(JSON); ok {
		c = JSON{Borrow: true}
	}
	return c, err
}
