package schemas

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
)

// Bounds on what a producer's Avro can make a worker do. A writer schema
// comes from whoever may register one, and a payload's counts and lengths
// come from its bytes: both are checked before anything is allocated for
// them.
const (
	// MaxAvroSchemaBytes bounds a writer schema's JSON text; a longer
	// one is refused before it is parsed.
	MaxAvroSchemaBytes = 64 << 10
	// MaxAvroSchemaDepth bounds how deeply a writer schema's types nest
	// (records, arrays, maps, unions).
	MaxAvroSchemaDepth = 32
	// MaxAvroElements bounds the array items and map entries of one
	// value, all its arrays and maps together.
	MaxAvroElements = 1 << 16
	// MaxAvroJSONBytes bounds the JSON text one value decodes into.
	MaxAvroJSONBytes = 8 << 20
)

// checkAvroSchema refuses a writer schema a payload could use to make a
// reader work without bound: a recursive one (its values nest as deep
// as the bytes allow, past any stack), one nested deeper than
// MaxAvroSchemaDepth, and one with an array or map whose items can be
// encoded in no bytes (a few bytes of block count then stand for
// billions of them).
func checkAvroSchema(s avro.Schema) error {
	c := schemaCheck{memo: map[string]schemaFacts{}}
	_, err := c.walk(s, 1)
	return err
}

// schemaFacts is what checkAvroSchema learns of a named type once: the
// walk of a schema that uses a type many times stays linear.
type schemaFacts struct {
	zero  bool // its values can be encoded in no bytes
	depth int  // how deep its types nest
}

type schemaCheck struct {
	path []string // the named types being walked, outermost first
	memo map[string]schemaFacts
}

func (c *schemaCheck) walk(s avro.Schema, depth int) (schemaFacts, error) {
	if depth > MaxAvroSchemaDepth {
		return schemaFacts{}, fmt.Errorf("types nest deeper than %d levels", MaxAvroSchemaDepth)
	}
	if n, ok := s.(avro.NamedSchema); ok && (s.Type() == avro.Record || s.Type() == avro.Error) {
		name := n.FullName()
		if slices.Contains(c.path, name) {
			return schemaFacts{}, fmt.Errorf("record %s contains itself; recursive schemas are not read", name)
		}
		if f, ok := c.memo[name]; ok {
			if depth+f.depth-1 > MaxAvroSchemaDepth {
				return schemaFacts{}, fmt.Errorf("types nest deeper than %d levels", MaxAvroSchemaDepth)
			}
			return f, nil
		}
		c.path = append(c.path, name)
		f := schemaFacts{zero: true, depth: 1}
		for _, field := range s.(*avro.RecordSchema).Fields() {
			sub, err := c.walk(field.Type(), depth+1)
			if err != nil {
				return f, err
			}
			f.zero = f.zero && sub.zero
			f.depth = max(f.depth, sub.depth+1)
		}
		c.path = c.path[:len(c.path)-1]
		c.memo[name] = f
		return f, nil
	}
	switch x := s.(type) {
	case *avro.RefSchema:
		return c.walk(x.Schema(), depth)
	case *avro.ArraySchema:
		sub, err := c.walk(x.Items(), depth+1)
		if err != nil {
			return sub, err
		}
		if sub.zero {
			return sub, fmt.Errorf("an array of %s: its items take no bytes, so a few bytes could stand for billions of them", x.Items().Type())
		}
		return schemaFacts{depth: sub.depth + 1}, nil
	case *avro.MapSchema:
		sub, err := c.walk(x.Values(), depth+1)
		if err != nil {
			return sub, err
		}
		if sub.zero {
			return sub, fmt.Errorf("a map of %s: its values take no bytes", x.Values().Type())
		}
		return schemaFacts{depth: sub.depth + 1}, nil
	case *avro.UnionSchema:
		f := schemaFacts{depth: 1}
		for _, t := range x.Types() {
			sub, err := c.walk(t, depth+1)
			if err != nil {
				return f, err
			}
			f.depth = max(f.depth, sub.depth+1)
		}
		return f, nil // the branch index takes a byte
	case *avro.FixedSchema:
		return schemaFacts{zero: x.Size() == 0, depth: 1}, nil
	}
	return schemaFacts{zero: s.Type() == avro.Null, depth: 1}, nil
}

// jsonDepthWithin reports whether JSON text nests at most max levels,
// counting brackets outside strings. It is how a writer schema's text is
// checked before a parser recurses into it.
func jsonDepthWithin(b []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return true
}

// avroReader reads one binary Avro value by its writer schema, checking
// every count and length against the bytes that remain and the bounds
// above, and writes it as JSON when emit is set. Decoding with it, not
// with a reflective decoder, also keeps nothing per writer schema once a
// value is read.
type avroReader struct {
	b        []byte
	elements int
	emit     bool
	out      []byte
}

var errAvroShort = errors.New("the payload ends inside a value")

// readAvro reads exactly one value of s from payload, as JSON when emit
// is set; bytes left after it are an error, as they are a second value
// that would otherwise be dropped unseen.
func readAvro(s avro.Schema, payload []byte, emit bool, dst []byte) ([]byte, error) {
	r := avroReader{b: payload, emit: emit, out: dst}
	if err := r.value(s); err != nil {
		return nil, err
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%d bytes follow the record; a value holds one record", len(r.b))
	}
	return r.out, nil
}

func (r *avroReader) long() (int64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		if n == 0 {
			return 0, errAvroShort
		}
		return 0, errors.New("a number longer than 64 bits")
	}
	r.b = r.b[n:]
	return int64(v>>1) ^ -int64(v&1), nil
}

// length reads a byte length and takes that many bytes.
func (r *avroReader) length() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(r.b)) {
		return nil, fmt.Errorf("a length of %d where %d bytes remain", n, len(r.b))
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b, nil
}

func (r *avroReader) take(n int) ([]byte, error) {
	if n > len(r.b) {
		return nil, errAvroShort
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b, nil
}

func (r *avroReader) put(b ...byte) {
	if r.emit {
		r.out = append(r.out, b...)
	}
}

func (r *avroReader) value(s avro.Schema) error {
	if len(r.out) > MaxAvroJSONBytes {
		return fmt.Errorf("the value decodes to more than %d bytes of JSON", MaxAvroJSONBytes)
	}
	switch x := s.(type) {
	case *avro.RefSchema:
		return r.value(x.Schema())
	case *avro.RecordSchema:
		r.put('{')
		for i, f := range x.Fields() {
			if i > 0 {
				r.put(',')
			}
			if r.emit {
				r.out = appendString(r.out, f.Name())
			}
			r.put(':')
			if err := r.value(f.Type()); err != nil {
				return err
			}
		}
		r.put('}')
		return nil
	case *avro.EnumSchema:
		i, err := r.long()
		if err != nil {
			return err
		}
		syms := x.Symbols()
		if i < 0 || i >= int64(len(syms)) {
			return fmt.Errorf("enum %s has no symbol %d", x.FullName(), i)
		}
		if r.emit {
			r.out = appendString(r.out, syms[i])
		}
		return nil
	case *avro.ArraySchema:
		r.put('[')
		err := r.blocks(func(first bool) error {
			if !first {
				r.put(',')
			}
			return r.value(x.Items())
		})
		r.put(']')
		return err
	case *avro.MapSchema:
		r.put('{')
		err := r.blocks(func(first bool) error {
			if !first {
				r.put(',')
			}
			k, err := r.length()
			if err != nil {
				return err
			}
			if r.emit {
				r.out = appendString(r.out, string(k))
			}
			r.put(':')
			return r.value(x.Values())
		})
		r.put('}')
		return err
	case *avro.UnionSchema:
		i, err := r.long()
		if err != nil {
			return err
		}
		types := x.Types()
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("a union of %d types has no branch %d", len(types), i)
		}
		return r.value(types[i])
	case *avro.FixedSchema:
		b, err := r.take(x.Size())
		if err != nil {
			return err
		}
		return r.bytes(b, x.Logical())
	case *avro.PrimitiveSchema:
		return r.primitive(x)
	}
	if s.Type() == avro.Null {
		r.put([]byte("null")...)
		return nil
	}
	return fmt.Errorf("avro type %s is not read", s.Type())
}

// blocks reads an array's or a map's blocks, calling item once per
// element, and counts the elements against MaxAvroElements and the
// bytes that remain (checkAvroSchema made sure every element takes at
// least one).
func (r *avroReader) blocks(item func(first bool) error) error {
	first := true
	for {
		n, err := r.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			if n == math.MinInt64 {
				return errors.New("a block count out of range")
			}
			n = -n
			if _, err := r.long(); err != nil { // the block's size in bytes
				return err
			}
		}
		if n > int64(len(r.b)) {
			return fmt.Errorf("a block of %d items where %d bytes remain", n, len(r.b))
		}
		if r.elements += int(n); r.elements > MaxAvroElements {
			return fmt.Errorf("more than %d array items and map entries in one value", MaxAvroElements)
		}
		for range n {
			if err := item(first); err != nil {
				return err
			}
			first = false
		}
	}
}

func (r *avroReader) primitive(s *avro.PrimitiveSchema) error {
	var logical avro.LogicalType
	if l := s.Logical(); l != nil {
		logical = l.Type()
	}
	switch s.Type() {
	case avro.Null:
		r.put([]byte("null")...)
	case avro.Boolean:
		b, err := r.take(1)
		if err != nil {
			return err
		}
		if b[0] > 1 {
			return fmt.Errorf("a boolean of %d", b[0])
		}
		if r.emit {
			r.out = strconv.AppendBool(r.out, b[0] == 1)
		}
	case avro.Int, avro.Long:
		v, err := r.long()
		if err != nil {
			return err
		}
		if s.Type() == avro.Int && (v < math.MinInt32 || v > math.MaxInt32) {
			return fmt.Errorf("an int of %d", v)
		}
		if !r.emit {
			return nil
		}
		switch logical {
		case avro.TimestampMillis, avro.LocalTimestampMillis:
			r.out = appendString(r.out, time.UnixMilli(v).UTC().Format(TimestampLayout))
		case avro.TimestampMicros, avro.LocalTimestampMicros:
			r.out = appendString(r.out, time.UnixMicro(v).UTC().Format(TimestampLayout))
		case avro.Date:
			r.out = appendString(r.out, time.Unix(v*86400, 0).UTC().Format(time.DateOnly))
		default:
			r.out = strconv.AppendInt(r.out, v, 10)
		}
	case avro.Float, avro.Double:
		size, bits := 4, 32
		if s.Type() == avro.Double {
			size, bits = 8, 64
		}
		b, err := r.take(size)
		if err != nil {
			return err
		}
		var f float64
		if size == 4 {
			f = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		} else {
			f = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("a %s of %v, which JSON cannot hold", s.Type(), f)
		}
		if r.emit {
			r.out = strconv.AppendFloat(r.out, f, 'g', -1, bits)
		}
	case avro.String:
		b, err := r.length()
		if err != nil {
			return err
		}
		if r.emit {
			r.out = appendString(r.out, string(b))
		}
	case avro.Bytes:
		b, err := r.length()
		if err != nil {
			return err
		}
		return r.bytes(b, s.Logical())
	default:
		return fmt.Errorf("avro type %s is not read", s.Type())
	}
	return nil
}

// bytes writes bytes or fixed: a decimal as its number, anything else as
// base64 text, as encoding/json writes []byte.
func (r *avroReader) bytes(b []byte, l avro.LogicalSchema) error {
	if !r.emit {
		return nil
	}
	if d, ok := l.(*avro.DecimalLogicalSchema); ok && len(b) > 0 && len(b) <= 64 {
		n := new(big.Int).SetBytes(b)
		if b[0]&0x80 != 0 { // two's complement
			n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
		}
		r.out = append(r.out, new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale())), nil)).FloatString(d.Scale())...)
		return nil
	}
	r.out = append(r.out, '"')
	r.out = base64.StdEncoding.AppendEncode(r.out, b)
	r.out = append(r.out, '"')
	return nil
}
