package schemas

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// Avro is the Avro single-object codec (a 0xC3 0x01 marker, the schema's
// CRC-64-AVRO fingerprint, then the binary record) over schemas/event.avsc.
// metadata, lead_data and extra travel as JSON object text.
//
// It is backed by hamba/avro, which writes the same bytes as goavro and
// reads and writes them about seven times faster (schemas/avrolib_bench_test.go).
type Avro struct{}

// AvroRecord is event.avsc as hamba/avro binds it: nullable unions are
// pointers, timestamp-millis a time.Time. Encoders that write Avro object
// container files embed it.
type AvroRecord struct {
	EventID      string    `avro:"event_id"`
	Timestamp    time.Time `avro:"timestamp"`
	AccountID    string    `avro:"account_id"`
	ResourceID   string    `avro:"resource_id"`
	Sequence     int64     `avro:"sequence"`
	EventType    string    `avro:"event_type"`
	ResourceType *string   `avro:"resource_type"`
	FlowID       *string   `avro:"flow_id"`
	LeadID       *string   `avro:"lead_id"`
	EntityType   *string   `avro:"entity_type"`
	EntityID     *string   `avro:"entity_id"`
	Outcome      *string   `avro:"outcome"`
	DurationMS   *int64    `avro:"duration_ms"`
	Metadata     *string   `avro:"metadata"`
	LeadData     *string   `avro:"lead_data"`
	Extra        *string   `avro:"extra"`
}

// avroAPI reads strings up to the largest Kafka record Firehose produces
// (hamba's default stops at 1 MiB, below max_event_bytes' ceiling), and
// arrays of at most 1 Mi items: a producer's schema may have arrays, and
// their lengths come from the bytes, so a few bytes must not make the
// decoder allocate gigabytes.
var avroAPI = avro.Config{MaxByteSliceSize: 8 << 20, MaxSliceAllocSize: 1 << 20}.Freeze()

type avroParsed struct {
	schema avro.Schema
	header [10]byte // single-object marker and fingerprint
	legacy [10]byte // the header earlier releases wrote, with goavro
}

// legacyFingerprint is the fingerprint goavro computed for event.avsc,
// which earlier releases wrote.
// goavro keeps {"type":"long"} for the timestamp in the canonical form
// where the specification (and Java's Avro) writes "long", so its
// fingerprint differs from everyone else's. Decode still accepts it for
// events written before the switch to hamba/avro.
const legacyFingerprint = 0x52b73874de640b20

var eventAvro = sync.OnceValues(func() (*avroParsed, error) {
	s, err := avro.Parse(AvroSchema)
	if err != nil {
		return nil, fmt.Errorf("event.avsc: %w", err)
	}
	fp, err := canonicalFingerprint(AvroSchema)
	if err != nil {
		return nil, err
	}
	p := &avroParsed{schema: s}
	p.header[0], p.header[1] = 0xC3, 0x01
	// The specification writes the fingerprint little-endian; hamba
	// returns it big-endian.
	binary.LittleEndian.PutUint64(p.header[2:], binary.BigEndian.Uint64(fp))
	p.legacy[0], p.legacy[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(p.legacy[2:], legacyFingerprint)
	return p, nil
})

// canonicalFingerprint is the CRC-64-AVRO fingerprint of a schema's
// Parsing Canonical Form, which keeps only the attributes that matter to
// parsing: hamba/avro keeps logicalType in it, which the specification
// and Java's Avro strip, so it is stripped here before hamba
// fingerprints.
func canonicalFingerprint(schema string) ([]byte, error) {
	var v any
	if err := json.Unmarshal([]byte(schema), &v); err != nil {
		return nil, err
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "logicalType")
			for _, y := range x {
				strip(y)
			}
		case []any:
			for _, y := range x {
				strip(y)
			}
		}
	}
	strip(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s, err := avro.ParseBytes(b)
	if err != nil {
		return nil, err
	}
	return s.FingerprintUsing(avro.CRC64Avro)
}

// EventAvroSchema returns event.avsc parsed.
func EventAvroSchema() (avro.Schema, error) {
	p, err := eventAvro()
	if err != nil {
		return nil, err
	}
	return p.schema, nil
}

// Decode parses one single-object encoded event and validates it.
func (Avro) Decode(data []byte) (*Event, error) {
	p, err := eventAvro()
	if err != nil {
		return nil, decodeError(err)
	}
	if len(data) < len(p.header) || data[0] != 0xC3 || data[1] != 0x01 {
		return nil, decodeError(errors.New("not an Avro single-object event: no 0xC3 0x01 marker"))
	}
	if h := string(data[:len(p.header)]); h != string(p.header[:]) && h != string(p.legacy[:]) {
		return nil, decodeError(fmt.Errorf("not an Avro single-object event of event.avsc: schema fingerprint %x", data[2:10]))
	}
	return decodeAvroBody(p.schema, data[len(p.header):])
}

// decodeAvroBody reads one binary event.avsc record and validates it.
// The body must hold that one record and nothing after it.
func decodeAvroBody(s avro.Schema, body []byte) (*Event, error) {
	if _, err := readAvro(s, body, false, nil); err != nil {
		return nil, decodeError(fmt.Errorf("not an Avro event: %w", err))
	}
	var r AvroRecord
	if err := avroAPI.Unmarshal(s, body, &r); err != nil {
		return nil, decodeError(fmt.Errorf("not an Avro event: %w", err))
	}
	e, err := FromAvro(&r)
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
	p, err := eventAvro()
	if err != nil {
		return dst, err
	}
	return appendAvroBody(append(dst, p.header[:]...), p.schema, e)
}

func appendAvroBody(dst []byte, s avro.Schema, e *Event) ([]byte, error) {
	r, err := ToAvro(e)
	if err != nil {
		return dst, err
	}
	b, err := avroAPI.Marshal(s, &r)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// ToAvro returns e as an event.avsc record.
func ToAvro(e *Event) (AvroRecord, error) {
	optStr := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	optJSON := func(raw json.RawMessage) *string {
		if raw == nil {
			return nil
		}
		s := string(raw)
		return &s
	}
	r := AvroRecord{
		EventID: e.EventID, Timestamp: e.Timestamp.UTC(), AccountID: e.AccountID, ResourceID: e.ResourceID,
		Sequence: e.Sequence, EventType: e.EventType,
		ResourceType: optStr(e.ResourceType), FlowID: optStr(e.FlowID), LeadID: optStr(e.LeadID),
		EntityType: optStr(e.EntityType), EntityID: optStr(e.EntityID), Outcome: optStr(e.Outcome),
		DurationMS: e.DurationMS, Metadata: optJSON(e.Metadata), LeadData: optJSON(e.LeadData),
	}
	if len(e.Extra) > 0 {
		b := e.Extra.AppendObject(nil)
		if !json.Valid(b) {
			return r, fmt.Errorf("encode extra fields: a value is not JSON")
		}
		r.Extra = optJSON(b)
	}
	return r, nil
}

// FromAvro converts an event.avsc record into an Event, checking the JSON
// object text of metadata, lead_data and extra as the JSON codec checks
// objects. It does not validate the event.
func FromAvro(r *AvroRecord) (*Event, error) {
	var ps []Problem
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	optJSON := func(k string, s *string) json.RawMessage {
		if s == nil {
			return nil
		}
		structure, tooDeep, object := checkStructure([]byte(*s), k)
		ps = append(ps, structure...)
		if tooDeep {
			return nil
		}
		if !object {
			ps = append(ps, Problem{k, "must hold JSON object text"})
			return nil
		}
		return compact(*s)
	}
	e := &Event{
		EventID: r.EventID, Timestamp: r.Timestamp.UTC(), AccountID: r.AccountID, ResourceID: r.ResourceID,
		Sequence: r.Sequence, EventType: r.EventType,
		ResourceType: deref(r.ResourceType), FlowID: deref(r.FlowID), LeadID: deref(r.LeadID),
		EntityType: deref(r.EntityType), EntityID: deref(r.EntityID), Outcome: deref(r.Outcome),
		DurationMS: r.DurationMS,
	}
	e.Metadata = optJSON("metadata", r.Metadata)
	e.LeadData = optJSON("lead_data", r.LeadData)
	if extra := optJSON("extra", r.Extra); extra != nil {
		// Checked above: an object, compact, its keys unique.
		for m := range Members(extra) {
			if _, known := order[m.Key]; known {
				ps = append(ps, Problem{"extra", "holds schema field " + m.Key})
			}
			e.Extra = append(e.Extra, Field{m.Key, m.Value})
		}
		slices.SortFunc(e.Extra, compareFields)
	}
	if len(ps) > 0 {
		return nil, &Error{Class: ClassInvalid, Problems: ps}
	}
	return e, nil
}

// CodecFor returns the codec for an encoding name from config: "json" or
// "avro". The Schema Registry encodings need a registry: see Open.
func CodecFor(encoding string) (Codec, error) {
	switch encoding {
	case "", "json":
		return JSON{}, nil
	case "avro":
		if _, err := eventAvro(); err != nil {
			return nil, err
		}
		return Avro{}, nil
	case EncodingAvroConfluent, EncodingJSONConfluent:
		return nil, errors.New("encoding " + encoding + " needs a schema registry (schema_registry.url)")
	}
	return nil, errors.New(`unknown encoding ` + encoding + ` (want "json", "avro", "` + EncodingAvroConfluent + `" or "` + EncodingJSONConfluent + `")`)
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
