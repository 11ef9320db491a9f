package connectors

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/firehose/firehose/schemas"
)

// Encoder writes a batch's events in one output format. Each event gains
// firehose_metadata: batch_id, sequence (its position in the batch, from
// 0) and delivered_at (when the batch was sealed).
type Encoder interface {
	// Encode appends the encoding of b.Events to dst.
	Encode(dst []byte, b *Batch) ([]byte, error)
	ContentType() string
	Extension() string
}

// Compressor compresses an encoded batch.
type Compressor interface {
	Compress(dst, src []byte) ([]byte, error)
	// ContentEncoding is the HTTP Content-Encoding; "" for none.
	ContentEncoding() string
	Extension() string
}

// NewEncoder returns the encoder for a config name.
func NewEncoder(name string) (Encoder, error) {
	switch name {
	case "ndjson":
		return NDJSON{}, nil
	}
	return nil, fmt.Errorf("unknown encoding %q", name)
}

// NewCompressor returns the compressor for a config name.
func NewCompressor(name string) (Compressor, error) {
	switch name {
	case "none":
		return None{}, nil
	case "gzip":
		return Gzip{}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", name)
}

// metadataField is the firehose_metadata object of the i-th event of b.
func metadataField(dst []byte, b *Batch, i int) []byte {
	dst = append(dst, `{"batch_id":"`...)
	dst = append(dst, b.ID...) // IDs are built from safe characters
	dst = append(dst, `","sequence":`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `,"delivered_at":"`...)
	dst = b.SealedAt.UTC().AppendFormat(dst, schemas.TimestampLayout)
	return append(dst, `"}`...)
}

// MetadataKey is the name of the field every delivered event gains.
const MetadataKey = "firehose_metadata"

// NDJSON writes one JSON object per line.
type NDJSON struct{}

// Encode implements Encoder.
func (NDJSON) Encode(dst []byte, b *Batch) ([]byte, error) {
	var meta []byte
	for i, e := range b.Events {
		meta = metadataField(meta[:0], b, i)
		dst = schemas.AppendJSON(dst, e, []schemas.Field{{Name: MetadataKey, JSON: meta}})
		dst = append(dst, '\n')
	}
	return dst, nil
}

// ContentType implements Encoder.
func (NDJSON) ContentType() string { return "application/x-ndjson" }

// Extension implements Encoder.
func (NDJSON) Extension() string { return ".ndjson" }

// None passes bytes through.
type None struct{}

// Compress implements Compressor.
func (None) Compress(dst, src []byte) ([]byte, error) { return append(dst, src...), nil }

// ContentEncoding implements Compressor.
func (None) ContentEncoding() string { return "" }

// Extension implements Compressor.
func (None) Extension() string { return "" }

// Gzip compresses with klauspost/compress's gzip (stdlib-compatible
// output, faster), at the default level.
type Gzip struct{}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression); return w }}

// Compress implements Compressor.
func (Gzip) Compress(dst, src []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w := gzipPool.Get().(*gzip.Writer)
	defer gzipPool.Put(w)
	w.Reset(buf)
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ContentEncoding implements Compressor.
func (Gzip) ContentEncoding() string { return "gzip" }

// Extension implements Compressor.
func (Gzip) Extension() string { return ".gz" }
