package connectors

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// Encoder writes a batch's events in one output format. Each event gains
// firehose_metadata: batch_id, sequence (its position in the batch, from
// 0) and delivered_at (when the batch was sealed).
type Encoder interface {
	// Encode writes the encoding of b's events to w, a run at a time
	// (Batch.Each).
	Encode(w io.Writer, b *Batch) error
	ContentType() string
	Extension() string
}

// Compressor compresses an encoded batch.
type Compressor interface {
	Compress(dst, src []byte) ([]byte, error)
	// Writer returns a writer that compresses what is written to it onto
	// w; Close ends the stream and lets the writer go.
	Writer(w io.Writer) io.WriteCloser
	// ContentEncoding is the HTTP Content-Encoding; "" for none.
	ContentEncoding() string
	Extension() string
}

// NewEncoder returns the encoder for a config name; avroCodec is the block
// codec of Avro container files.
func NewEncoder(name, avroCodec string) (Encoder, error) {
	switch name {
	case "ndjson":
		return NDJSON{}, nil
	case "json":
		return JSONArray{}, nil
	case "avro":
		return NewAvroOCF(avroCodec)
	case "parquet":
		return nil, fmt.Errorf("encoding parquet compresses inside the file: build it with NewBody")
	}
	return nil, fmt.Errorf("unknown encoding %q", name)
}

// NewBody returns the encoder and the compressor of a connector's batch
// bodies (columns: a Parquet file's promoted columns). A Parquet file compresses its column chunks with the
// compression itself, so its body is not compressed again; an Avro
// container file's blocks are compressed by avroCodec.
func NewBody(encoding, compression, avroCodec string, columns ...Column) (Encoder, Compressor, error) {
	if encoding == "parquet" {
		p, err := NewParquet(compression, columns...)
		return p, None{}, err
	}
	enc, err := NewEncoder(encoding, avroCodec)
	if err != nil {
		return nil, nil, err
	}
	comp, err := NewCompressor(compression)
	if err != nil {
		return nil, nil, err
	}
	return enc, comp, nil
}

// newBody returns the encoder and compressor of connector c, whose
// transform is shape: a Parquet file's columns, or an Avro file's schema,
// then follow its shape.
func newBody(c Config, shape *transform.Transform) (Encoder, Compressor, error) {
	switch {
	case c.Encoding == "parquet" && shape != nil:
		p, err := NewShapedParquet(c.Compression, shape)
		return p, None{}, err
	case c.Encoding == "avro" && shape != nil:
		a, err := NewShapedAvro(c.AvroCodec, shape)
		if err != nil {
			return nil, nil, err
		}
		comp, err := NewCompressor(c.Compression)
		return a, comp, err
	}
	return NewBody(c.Encoding, c.Compression, c.AvroCodec, c.Columns...)
}

// NewCompressor returns the compressor for a config name.
func NewCompressor(name string) (Compressor, error) {
	switch name {
	case "none":
		return None{}, nil
	case "gzip":
		return Gzip{}, nil
	case "snappy":
		return Snappy{}, nil
	case "lz4":
		return LZ4{}, nil
	case "zstd":
		return Zstd{}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", name)
}

// metadataField is the firehose_metadata object of the i-th event of b.
func metadataField(dst []byte, b *Batch, i int) []byte {
	dst = append(dst, `{"batch_id":"`...)
	dst = append(dst, b.ID...) // IDs are built from safe characters
	dst = append(dst, `","sequence":`...)
	dst = strconv.AppendInt(dst, int64(b.Seq+i), 10)
	dst = append(dst, `,"delivered_at":"`...)
	dst = schemas.AppendTimestamp(dst, b.SealedAt)
	if b.Replay != "" {
		dst = append(dst, `","replay":"`...)
		dst = append(dst, b.Replay...) // 8 hex digits
	}
	return append(dst, `"}`...)
}

// replayOf is b's replay job, or nil.
func replayOf(b *Batch) *string {
	if b.Replay == "" {
		return nil
	}
	return &b.Replay
}

// AppendEvent appends the i-th event of b as one JSON object with its
// firehose_metadata. A transformed event is its shape (Batch.Shaped). A kept event is encoded; otherwise its record's value,
// the event as the processor wrote it, is copied with the field spliced in
// before its closing brace: the same bytes, without decoding and encoding
// every event again.
func AppendEvent(dst []byte, b *Batch, i int) []byte {
	var meta [128]byte
	m := metadataField(meta[:0], b, i)
	if b.Shaped != nil {
		v := b.Shaped[i]
		dst = append(dst, v[:len(v)-1]...)
		if len(v) > 2 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"`+MetadataKey+`":`...)
		dst = append(dst, m...)
		return append(dst, '}')
	}
	if e := b.Events[i]; e != nil {
		return schemas.AppendJSON(dst, e, []schemas.Field{{Name: MetadataKey, JSON: m}})
	}
	v := bytes.TrimRight(b.Records[i].Value, " \t")
	dst = append(dst, v[:len(v)-1]...)
	dst = append(dst, `,"`+MetadataKey+`":`...)
	dst = append(dst, m...)
	return append(dst, '}')
}

// spliceable reports whether a record value that decoded as an event can
// be written as it is, with firehose_metadata spliced in: it holds no line
// break (JSON strings cannot hold one raw, so one would be whitespace
// between tokens, and would split an NDJSON line), and it ends with its
// object's closing brace.
func spliceable(v []byte) bool {
	if bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0 {
		return false
	}
	v = bytes.TrimRight(v, " \t")
	return len(v) > 2 && v[len(v)-1] == '}'
}

// MetadataKey is the name of the field every delivered event gains.
const MetadataKey = "firehose_metadata"

// EncodeBody returns b's body: its events encoded by enc and compressed
// by comp, one run at a time (Batch.Each), so that a packed batch never
// has all its events, nor all its encoding, in memory at once.
func EncodeBody(enc Encoder, comp Compressor, b *Batch) ([]byte, error) {
	est := b.raw
	if est == 0 {
		for _, r := range b.Records {
			est += len(r.Value) + 128 // firehose_metadata, separators
		}
	}
	est /= 8 // compressed, or Parquet
	body := bodyBuffers.Get().(*bytes.Buffer)
	body.Reset()
	body.Grow(est)
	w := comp.Writer(body)
	err := enc.Encode(w, b)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	var out []byte
	if err == nil {
		// Held until delivered: a copy of its size, not the buffer.
		out = slices.Clone(body.Bytes())
	}
	if body.Cap() <= maxBodyBuffer {
		bodyBuffers.Put(body)
	}
	return out, err
}

// bodyBuffers hold bodies while they are written; one larger than
// maxBodyBuffer is not kept.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxBodyBuffer = 16 << 20

// encodeChunk is how much encoded JSON is written at once.
const encodeChunk = 256 << 10

// encodeBuffers hold encoded JSON until it is written; reused.
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, encodeChunk+64<<10); return &b }}

// writeEvents writes b's events, each followed by sep and the last by
// end, in chunks of about encodeChunk.
func writeEvents(w io.Writer, b *Batch, start, sep, end string) error {
	bufp := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(bufp)
	buf := append((*bufp)[:0], start...)
	err := b.Each(func(run *Batch) error {
		for i := range run.Events {
			if run.Seq+i > 0 {
				buf = append(buf, sep...)
			}
			buf = AppendEvent(buf, run, i)
			if len(buf) >= encodeChunk {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	})
	if err == nil {
		buf = append(buf, end...)
		_, err = w.Write(buf)
	}
	*bufp = buf[:0]
	return err
}

// NDJSON writes one JSON object per line.
type NDJSON struct{}

// Encode implements Encoder.
func (NDJSON) Encode(w io.Writer, b *Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return writeEvents(w, b, "", "\n", "\n")
}

// ContentType implements Encoder.
func (NDJSON) ContentType() string { return "application/x-ndjson" }

// Extension implements Encoder.
func (NDJSON) Extension() string { return ".ndjson" }

// JSONArray writes the batch as one JSON array of events.
type JSONArray struct{}

// Encode implements Encoder.
func (JSONArray) Encode(w io.Writer, b *Batch) error { return writeEvents(w, b, "[", ",", "]\n") }

// ContentType implements Encoder.
func (JSONArray) ContentType() string { return "application/json" }

// Extension implements Encoder.
func (JSONArray) Extension() string { return ".json" }

// None passes bytes through.
type None struct{}

// Compress implements Compressor.
func (None) Compress(dst, src []byte) ([]byte, error) { return append(dst, src...), nil }

// ContentEncoding implements Compressor.
func (None) ContentEncoding() string { return "" }

// Extension implements Compressor.
func (None) Extension() string { return "" }

// Writer implements Compressor.
func (None) Writer(w io.Writer) io.WriteCloser { return nopCloser{w} }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Gzip compresses with klauspost/compress's gzip (stdlib-compatible
// output, faster), at the default level.
type Gzip struct{}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression); return w }}

// Compress implements Compressor.
func (Gzip) Compress(dst, src []byte) ([]byte, error) { return streamCompress(&gzipPool, dst, src) }

// streamWriter is a pooled stream compressor: gzip, s2 (snappy) and lz4
// writers all have this shape.
type streamWriter interface {
	io.WriteCloser
	Reset(io.Writer)
}

// pooledWriter is a stream compressor of a pool, back in it once closed.
type pooledWriter struct {
	streamWriter
	pool *sync.Pool
}

func (p *pooledWriter) Close() error {
	err := p.streamWriter.Close()
	p.streamWriter.Reset(nil)
	p.pool.Put(p.streamWriter)
	return err
}

func poolWriter(pool *sync.Pool, w io.Writer) io.WriteCloser {
	sw := pool.Get().(streamWriter)
	sw.Reset(w)
	return &pooledWriter{streamWriter: sw, pool: pool}
}

// streamCompress compresses src onto dst with a writer from pool.
func streamCompress(pool *sync.Pool, dst, src []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w := pool.Get().(streamWriter)
	defer pool.Put(w)
	w.Reset(buf)
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Writer implements Compressor.
func (Gzip) Writer(w io.Writer) io.WriteCloser { return poolWriter(&gzipPool, w) }

// ContentEncoding implements Compressor.
func (Gzip) ContentEncoding() string { return "gzip" }

// Extension implements Compressor.
func (Gzip) Extension() string { return ".gz" }

// Snappy writes the snappy framing format (what snzip and python-snappy's
// stream functions read), with klauspost/compress's s2 in snappy mode.
type Snappy struct{}

var snappyPool = sync.Pool{New: func() any { return s2.NewWriter(nil, s2.WriterSnappyCompat(), s2.WriterConcurrency(1)) }}

// Compress implements Compressor.
func (Snappy) Compress(dst, src []byte) ([]byte, error) { return streamCompress(&snappyPool, dst, src) }

// Writer implements Compressor.
func (Snappy) Writer(w io.Writer) io.WriteCloser { return poolWriter(&snappyPool, w) }

// ContentEncoding implements Compressor. There is no registered HTTP
// content coding for snappy; this is the common informal name.
func (Snappy) ContentEncoding() string { return "x-snappy-framed" }

// Extension implements Compressor.
func (Snappy) Extension() string { return ".sz" }

// LZ4 writes the LZ4 frame format (what the lz4 command reads).
type LZ4 struct{}

var lz4Pool = sync.Pool{New: func() any { return lz4.NewWriter(nil) }}

// Compress implements Compressor.
func (LZ4) Compress(dst, src []byte) ([]byte, error) { return streamCompress(&lz4Pool, dst, src) }

// Writer implements Compressor.
func (LZ4) Writer(w io.Writer) io.WriteCloser { return poolWriter(&lz4Pool, w) }

// ContentEncoding implements Compressor.
func (LZ4) ContentEncoding() string { return "x-lz4" }

// Extension implements Compressor.
func (LZ4) Extension() string { return ".lz4" }

// Zstd writes a zstd frame at the default level.
type Zstd struct{}

var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	// EncodeAll on one encoder is safe for concurrent use.
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	return e
})

// Compress implements Compressor.
func (Zstd) Compress(dst, src []byte) ([]byte, error) {
	return zstdEncoder().EncodeAll(src, dst), nil
}

var zstdWriters = sync.Pool{New: func() any {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	return e
}}

type zstdWriter struct{ *zstd.Encoder }

func (z zstdWriter) Close() error {
	err := z.Encoder.Close()
	z.Encoder.Reset(nil)
	zstdWriters.Put(z.Encoder)
	return err
}

// Writer implements Compressor: one zstd frame.
func (Zstd) Writer(w io.Writer) io.WriteCloser {
	e := zstdWriters.Get().(*zstd.Encoder)
	e.Reset(w)
	return zstdWriter{e}
}

// ContentEncoding implements Compressor.
func (Zstd) ContentEncoding() string { return "zstd" }

// Extension implements Compressor.
func (Zstd) Extension() string { return ".zst" }
