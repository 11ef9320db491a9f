package schemas

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/sr"
)

// The Schema Registry encodings: Confluent's wire format (magic byte 0, a
// 4-byte big-endian schema id, then the payload) with an Avro or a JSON
// payload.
const (
	EncodingAvroConfluent = "avro-confluent"
	EncodingJSONConfluent = "json-confluent"
)

// JSONSchema is the JSON Schema of an Event (schemas/event.schema.json),
// registered for json-confluent topics that Firehose writes.
//
//go:embed event.schema.json
var JSONSchema string

// IsConfluent reports whether an encoding name is a Schema Registry one.
func IsConfluent(encoding string) bool {
	return encoding == EncodingAvroConfluent || encoding == EncodingJSONConfluent
}

// maxUnknownIDs bounds how many schema ids the registry answered "not
// found" for are remembered; a producer writing random ids costs one
// registry request per id, not unbounded memory.
const maxUnknownIDs = 4096

// Registry resolves schema ids through a Confluent-compatible Schema
// Registry and caches what it learns; one Registry is shared by every
// codec of a process. Schemas are immutable under their id, so the cache
// never expires.
type Registry struct {
	cl  *sr.Client
	log *slog.Logger

	mu      sync.RWMutex
	known   map[int]*writerSchema
	unknown map[int]struct{}
}

// writerSchema is what one schema id says about the payloads under it.
type writerSchema struct {
	kind  sr.SchemaType
	avro  avro.Schema // Avro only
	event bool        // an Avro schema equal to event.avsc: the fast path
	bad   string      // why payloads under this id cannot be read, if so
}

// NewRegistry returns a Registry over a franz-go sr client.
func NewRegistry(cl *sr.Client, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{cl: cl, log: log, known: map[int]*writerSchema{}, unknown: map[int]struct{}{}}
}

// Codec returns the codec of a Schema Registry encoding. With a subject,
// the codec also writes: the event schema (event.avsc or
// event.schema.json) is registered under the subject, or only looked up
// when register is false, and Append frames payloads with its id.
// Without one the codec only reads. Borrow is as for JSON.
func (r *Registry) Codec(ctx context.Context, encoding, subject string, register, borrow bool) (*Confluent, error) {
	c := &Confluent{reg: r, encoding: encoding, borrow: borrow}
	var schema sr.Schema
	switch encoding {
	case EncodingAvroConfluent:
		c.kind = sr.TypeAvro
		schema = sr.Schema{Schema: AvroSchema, Type: sr.TypeAvro}
		if _, err := eventAvro(); err != nil {
			return nil, err
		}
	case EncodingJSONConfluent:
		c.kind = sr.TypeJSON
		schema = sr.Schema{Schema: JSONSchema, Type: sr.TypeJSON}
	default:
		return nil, fmt.Errorf("%q is not a Schema Registry encoding", encoding)
	}
	if subject == "" {
		return c, nil
	}
	var (
		ss  sr.SubjectSchema
		err error
	)
	if register {
		ss, err = r.cl.CreateSchema(ctx, subject, schema)
	} else {
		ss, err = r.cl.LookupSchema(ctx, subject, schema)
	}
	if err != nil {
		verb := "register the event schema under"
		if !register {
			verb = "look up the event schema under"
		}
		return nil, fmt.Errorf("schema registry: %s subject %q: %w", verb, subject, err)
	}
	c.id = ss.ID
	r.mu.Lock()
	r.known[ss.ID] = r.parse(schema)
	r.mu.Unlock()
	return c, nil
}

// parse turns a registry schema into a writerSchema.
func (r *Registry) parse(s sr.Schema) *writerSchema {
	w := &writerSchema{kind: s.Type}
	switch s.Type {
	case sr.TypeJSON:
	case sr.TypeAvro:
		if len(s.References) > 0 {
			w.bad = "Avro schemas with references are not supported"
			return w
		}
		as, err := avro.ParseBytes([]byte(s.Schema))
		if err != nil {
			w.bad = "the registry's Avro schema does not parse: " + err.Error()
			return w
		}
		w.avro = as
		if ev, err := EventAvroSchema(); err == nil {
			w.event = as.Fingerprint() == ev.Fingerprint()
		}
	default:
		w.bad = s.Type.String() + " schemas are not supported"
	}
	return w
}

// Resolve fetches the schemas of every framed value that the cache does
// not know. A registry that cannot be reached is retried with backoff
// until ctx ends, so an outage delays events instead of dead-lettering
// them; an id the registry does not have is remembered as such, and
// Decode rejects its values. Call it with a poll's values before
// decoding them.
func (r *Registry) Resolve(ctx context.Context, values iter.Seq[[]byte]) error {
	var need []int
	r.mu.RLock()
	for v := range values {
		id, ok := frameID(v)
		if !ok {
			continue
		}
		if _, ok := r.known[id]; ok {
			continue
		}
		if _, ok := r.unknown[id]; ok {
			continue
		}
		if !contains(need, id) {
			need = append(need, id)
		}
	}
	r.mu.RUnlock()
	for _, id := range need {
		if err := r.fetch(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (r *Registry) fetch(ctx context.Context, id int) error {
	var backoff time.Duration
	for {
		s, err := r.cl.SchemaByID(ctx, id)
		var re *sr.ResponseError
		switch {
		case err == nil:
			w := r.parse(s)
			r.mu.Lock()
			r.known[id] = w
			r.mu.Unlock()
			return nil
		case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
			r.mu.Lock()
			if len(r.unknown) >= maxUnknownIDs {
				clear(r.unknown)
			}
			r.unknown[id] = struct{}{}
			r.mu.Unlock()
			return nil
		}
		if fn, ok := ctx.Value(progressKey{}).(func()); ok {
			fn() // waiting, not stuck
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
		r.log.Warn("schema registry: cannot fetch a schema; retrying, events wait", "schema_id", id, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// frameID returns the schema id of a value in Confluent's wire format.
func frameID(v []byte) (int, bool) {
	if len(v) < 5 || v[0] != 0 {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(v[1:5])), true
}

// Confluent is the codec of a Schema Registry encoding. Decode reads a
// payload by the schema its id names, once Resolve has fetched it: an
// Avro payload written with event.avsc takes the direct path; one written
// with another record schema (a producer's own, or event.avsc evolved
// with a new field) is read by its writer schema and its fields mapped by
// name, unknown ones kept in Extra as the JSON codec does. A JSON payload
// is read by the JSON codec.
type Confluent struct {
	reg      *Registry
	encoding string
	kind     sr.SchemaType
	id       int // written by Append; 0 for a read-only codec
	borrow   bool
}

// Resolve implements Resolver.
func (c *Confluent) Resolve(ctx context.Context, values iter.Seq[[]byte]) error {
	return c.reg.Resolve(ctx, values)
}

// ID is the schema id Append writes, 0 for a read-only codec.
func (c *Confluent) ID() int { return c.id }

// Decode implements Codec.
func (c *Confluent) Decode(data []byte) (*Event, error) {
	id, ok := frameID(data)
	if !ok {
		hint := ""
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			hint = "; it looks like plain JSON: produce it with a Schema Registry serializer, or set this topic's encoding to json"
		}
		return nil, decodeError(fmt.Errorf("not in Schema Registry framing (magic byte 0, then a 4-byte schema id), which this topic's encoding %s requires%s", c.encoding, hint))
	}
	c.reg.mu.RLock()
	w := c.reg.known[id]
	_, unknown := c.reg.unknown[id]
	c.reg.mu.RUnlock()
	switch {
	case unknown:
		return nil, decodeError(fmt.Errorf("schema id %d is not in the schema registry", id))
	case w == nil:
		return nil, decodeError(fmt.Errorf("schema id %d was not resolved from the schema registry", id))
	case w.bad != "":
		return nil, decodeError(fmt.Errorf("schema id %d: %s", id, w.bad))
	case w.kind != c.kind:
		return nil, decodeError(fmt.Errorf("schema id %d is a %s schema, but this topic's encoding is %s", id, w.kind, c.encoding))
	}
	payload := data[5:]
	if c.kind == sr.TypeJSON {
		if !c.borrow {
			payload = bytes.Clone(payload)
		}
		return JSON{Borrow: true}.Decode(payload)
	}
	if w.event {
		return decodeAvroBody(w.avro, payload)
	}
	return decodeAvroGeneric(w.avro, payload)
}

// Append implements Codec: the framing with the codec's schema id, then
// the payload.
func (c *Confluent) Append(dst []byte, e *Event) ([]byte, error) {
	if c.id == 0 {
		return dst, errors.New("this " + c.encoding + " codec has no subject to write under")
	}
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(c.id))
	if c.kind == sr.TypeJSON {
		return AppendJSON(dst, e, nil), nil
	}
	p, err := eventAvro()
	if err != nil {
		return dst, err
	}
	return appendAvroBody(dst, p.schema, e)
}

// decodeAvroGeneric reads a payload written with a record schema other
// than event.avsc: by name, into the JSON form of an event, which the
// JSON codec then reads and validates, so both encodings meet one set of
// rules. metadata, lead_data and extra may be records or maps, or (as in
// event.avsc) JSON object text.
func decodeAvroGeneric(s avro.Schema, payload []byte) (*Event, error) {
	if _, ok := s.(*avro.RecordSchema); !ok {
		return nil, decodeError(fmt.Errorf("the writer schema is an Avro %s, not a record", s.Type()))
	}
	var m map[string]any
	if err := avroAPI.Unmarshal(s, payload, &m); err != nil {
		return nil, decodeError(fmt.Errorf("not an Avro record of its writer schema: %w", err))
	}
	obj := make(map[string]any, len(m))
	var extra map[string]json.RawMessage
	for k, v := range m {
		switch x := v.(type) {
		case time.Time:
			v = x.UTC().Format(TimestampLayout)
		case string:
			if (k == "metadata" || k == "lead_data" || k == "extra") && gjson.Valid(x) {
				v = json.RawMessage(x)
			}
		}
		if k == "extra" {
			if raw, ok := v.(json.RawMessage); ok && json.Unmarshal(raw, &extra) == nil {
				continue
			}
		}
		obj[k] = v
	}
	for k, v := range extra {
		if _, taken := obj[k]; !taken {
			obj[k] = v
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, decodeError(fmt.Errorf("the Avro record has a value JSON cannot hold: %w", err))
	}
	return JSON{Borrow: true}.Decode(b)
}

type progressKey struct{}

// WithProgress returns a context whose Resolve calls fn while it waits for
// an unreachable registry, so that a caller's liveness check can tell
// waiting from being stuck.
func WithProgress(ctx context.Context, fn func()) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}
