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
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"
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

// Bounds of a Registry's cache: schemas never change under their id, but
// producers may register as many as they like, so what is kept is
// bounded by bytes, and what the registry refused is asked again after a
// while.
const (
	// DefaultSchemaCacheBytes is the default budget of parsed schemas
	// kept, counted as schemaCost of their text; the least recently used
	// go first.
	DefaultSchemaCacheBytes = 64 << 20
	// refusedTTL is how long an id the registry answered 404 or another
	// 4xx for is remembered as such.
	refusedTTL = 5 * time.Minute
	// fetchConcurrency bounds the registry requests one Resolve has in
	// flight at once.
	fetchConcurrency = 8
)

// schemaCost is what a cached schema is counted as: a parsed Avro schema
// holds about ten times its text.
func schemaCost(text int) int { return 16*text + 512 }

// Registry resolves schema ids through a Confluent-compatible Schema
// Registry and caches what it learns, within a byte budget; one Registry
// is shared by every codec of a process and is safe for concurrent use.
type Registry struct {
	cl     *sr.Client
	log    *slog.Logger
	budget int
	now    func() time.Time

	mu    sync.RWMutex
	cache map[int]*cached
	cost  int
	clock atomic.Int64 // advances once per Resolve; stamps uses
}

// cached is one id's entry: its schema, or why its values cannot be read.
type cached struct {
	w       *writerSchema
	cost    int
	expires time.Time    // zero: kept until evicted
	used    atomic.Int64 // Registry.clock at the last use
}

// writerSchema is what one schema id says about the payloads under it.
type writerSchema struct {
	kind  sr.SchemaType
	avro  avro.Schema // Avro only
	event bool        // an Avro schema equal to event.avsc: the fast path
	bad   string      // why payloads under this id cannot be read, if so
	// refused: the registry itself refused the id, and bad says so
	// whole, id and all.
	refused bool
}

// NewRegistry returns a Registry over a franz-go sr client, with the
// default cache budget.
func NewRegistry(cl *sr.Client, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{cl: cl, log: log, budget: DefaultSchemaCacheBytes, now: time.Now, cache: map[int]*cached{}}
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
	r.store(ss.ID, parseWriterSchema(schema), len(schema.Schema), time.Time{})
	return c, nil
}

// parseWriterSchema turns a registry schema into a writerSchema. An Avro
// schema is checked before use: its size, its nesting, no recursion, no
// arrays of items that take no bytes (checkAvroSchema). Its named types
// are parsed in a cache of their own, so one producer's names neither
// stay in memory nor meet another's.
func parseWriterSchema(s sr.Schema) *writerSchema {
	w := &writerSchema{kind: s.Type}
	switch s.Type {
	case sr.TypeJSON:
	case sr.TypeAvro:
		switch {
		case len(s.References) > 0:
			w.bad = "Avro schemas with references are not supported"
			return w
		case len(s.Schema) > MaxAvroSchemaBytes:
			w.bad = fmt.Sprintf("the registry's Avro schema is %d bytes, over the %d read", len(s.Schema), MaxAvroSchemaBytes)
			return w
		case !jsonDepthWithin([]byte(s.Schema), 2*MaxAvroSchemaDepth+8):
			w.bad = fmt.Sprintf("the registry's Avro schema nests deeper than %d levels", MaxAvroSchemaDepth)
			return w
		}
		as, err := avro.ParseBytesWithCache([]byte(s.Schema), "", &avro.SchemaCache{})
		if err != nil {
			w.bad = "the registry's Avro schema does not parse: " + err.Error()
			return w
		}
		if err := checkAvroSchema(as); err != nil {
			w.bad = "the registry's Avro schema is not read: " + err.Error()
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

// store keeps w under id, evicting the least recently used entries while
// the cache is over its budget.
func (r *Registry) store(id int, w *writerSchema, text int, expires time.Time) {
	e := &cached{w: w, cost: schemaCost(text), expires: expires}
	e.used.Store(r.clock.Load())
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.cache[id]; ok {
		r.cost -= old.cost
	}
	r.cache[id] = e
	r.cost += e.cost
	for r.cost > r.budget && len(r.cache) > 1 {
		victim, oldest := 0, int64(math.MaxInt64)
		for k, c := range r.cache {
			if u := c.used.Load(); k != id && u < oldest {
				victim, oldest = k, u
			}
		}
		r.cost -= r.cache[victim].cost
		delete(r.cache, victim)
	}
}

// lookup returns id's live entry, marking it used.
func (r *Registry) lookup(id int) *writerSchema {
	r.mu.RLock()
	e := r.cache[id]
	r.mu.RUnlock()
	if e == nil || (!e.expires.IsZero() && r.now().After(e.expires)) {
		return nil
	}
	if c := r.clock.Load(); e.used.Load() != c {
		e.used.Store(c)
	}
	return e.w
}

// Resolve fetches the schemas of every framed value that the cache does
// not know, up to fetchConcurrency at a time. What the registry cannot
// answer now (no connection, 408, 429, 5xx) is retried with backoff
// until it answers or ctx ends, so an outage delays events instead of
// dead-lettering them; the wait reports no progress, so /healthz fails
// once it lasts longer than api.stall_timeout. An id the registry does
// not have (404) or refuses (another 4xx, such as 403 for a subject the
// credentials may not read) is remembered as such for refusedTTL, and
// Decode dead-letters its values with the registry's answer. Call it
// with a poll's values before decoding them.
func (r *Registry) Resolve(ctx context.Context, values iter.Seq[[]byte]) error {
	r.clock.Add(1)
	var need []int
	for v := range values {
		id, ok := frameID(v)
		if !ok || r.lookup(id) != nil || slices.Contains(need, id) {
			continue
		}
		need = append(need, id)
	}
	if len(need) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for _, id := range need {
		g.Go(func() error { return r.fetch(gctx, id) })
	}
	return g.Wait()
}

// fetch asks the registry for one id until it answers, and caches the
// answer.
func (r *Registry) fetch(ctx context.Context, id int) error {
	var backoff time.Duration
	for {
		_, err := r.ask(ctx, id)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
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

// ask makes one registry request for id and caches the answer: the
// schema, or the registry's refusal of it (for refusedTTL). The error is
// one worth asking again for: no connection, 408, 429, 5xx.
func (r *Registry) ask(ctx context.Context, id int) (*writerSchema, error) {
	s, err := r.cl.SchemaByID(ctx, id)
	if err == nil {
		w := parseWriterSchema(s)
		r.store(id, w, len(s.Schema), time.Time{})
		return w, nil
	}
	if why, refused := refusal(id, err); refused {
		w := &writerSchema{bad: why, refused: true}
		r.store(id, w, 0, r.now().Add(refusedTTL))
		return w, nil
	}
	return nil, err
}

// refusal tells an answer that holds for this id (404, or a 4xx other
// than 408 and 429) from one worth asking again, and says why the id's
// values cannot be read.
func refusal(id int, err error) (string, bool) {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return "", false
	}
	switch s := re.StatusCode; {
	case s == http.StatusNotFound:
		return fmt.Sprintf("schema id %d is not in the schema registry", id), true
	case s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests:
		msg := re.Message
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return fmt.Sprintf("the schema registry refused schema id %d: %d %s", id, s, msg), true
	}
	return "", false
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
	w := c.reg.lookup(id)
	if w == nil {
		// Evicted since Resolve, by another codec's poll: ask once.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		w, err = c.reg.ask(ctx, id)
		cancel()
		if err != nil {
			return nil, decodeError(fmt.Errorf("schema id %d could not be fetched from the schema registry: %w", id, err))
		}
	}
	switch {
	case w.bad != "":
		if w.refused {
			return nil, decodeError(errors.New(w.bad))
		}
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
// event.avsc) JSON object text; extra's members join the event's
// top-level fields, and a null extra is no field at all. The payload is
// read by readAvro: exactly one record, within the Avro bounds.
func decodeAvroGeneric(s avro.Schema, payload []byte) (*Event, error) {
	rs, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, decodeError(fmt.Errorf("the writer schema is an Avro %s, not a record", s.Type()))
	}
	body, err := readAvro(s, payload, true, nil)
	if err != nil {
		return nil, decodeError(fmt.Errorf("not an Avro record of its writer schema: %w", err))
	}
	out := make([]byte, 0, len(body)+16)
	out = append(out, '{')
	var extra []byte
	taken := make(map[string]bool, len(rs.Fields()))
	for m := range Members(body) {
		v := m.Value
		switch m.Key {
		case "metadata", "lead_data", "extra":
			if len(v) > 0 && v[0] == '"' {
				var text string
				if json.Unmarshal(v, &text) == nil && gjson.Valid(text) {
					v = []byte(text)
				}
			}
		}
		if m.Key == "extra" {
			if string(v) == "null" {
				continue
			}
			if len(v) > 0 && v[0] == '{' {
				extra = v
				continue
			}
		}
		taken[m.Key] = true
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendString(out, m.Key)
		out = append(out, ':')
		out = append(out, v...)
	}
	for m := range Members(extra) {
		if taken[m.Key] {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendString(out, m.Key)
		out = append(out, ':')
		out = append(out, m.Value...)
	}
	out = append(out, '}')
	return JSON{Borrow: true}.Decode(out)
}
