package connectors

import (
	"testing"

	"github.com/firehose/firehose/connectors/spec"
)

// Config validation accepts spec's names; the runtime must implement each
// of them, and no other: the two cannot drift apart.
func TestSpecVocabulariesAreImplemented(t *testing.T) {
	for _, e := range spec.Encodings {
		for _, c := range spec.AvroCodecs {
			if _, err := NewEncoder(e, c); err != nil {
				t.Errorf("encoding %q with avro codec %q: %v", e, c, err)
			}
		}
	}
	for _, c := range spec.Compressions {
		if _, err := NewCompressor(c); err != nil {
			t.Errorf("compression %q: %v", c, err)
		}
	}
	for _, bad := range []string{"", "NDJSON", "parquet", "csv"} {
		if _, err := NewEncoder(bad, spec.DefaultAvroCodec); err == nil {
			t.Errorf("encoding %q is not in spec.Encodings but builds", bad)
		}
	}
	for _, bad := range []string{"", "GZIP", "brotli", "deflate"} {
		if _, err := NewCompressor(bad); err == nil {
			t.Errorf("compression %q is not in spec.Compressions but builds", bad)
		}
	}
	if _, err := NewEncoder("avro", "bzip2"); err == nil {
		t.Error(`avro codec "bzip2" is not in spec.AvroCodecs but builds`)
	}
}

// A zero Config runs on spec's defaults, the same config fills.
func TestZeroConfigTakesSpecDefaults(t *testing.T) {
	var c Config
	c.defaults()
	want := Config{
		Batch:    Bounds{MaxEvents: spec.DefaultBatchMaxEvents, MaxBytes: spec.DefaultBatchMaxBytes, MaxAge: spec.DefaultBatchMaxAge},
		Encoding: spec.DefaultEncoding, Compression: spec.DefaultCompression, AvroCodec: spec.DefaultAvroCodec,
		Retry:            RetryPolicy{MaxAttempts: spec.DefaultRetryMaxAttempts, Initial: spec.DefaultRetryInitial, Max: spec.DefaultRetryMax},
		MaxBufferedBytes: spec.DefaultMaxBufferedBytes, MaxInFlight: spec.DefaultMaxInFlight,
	}
	if c.Batch != want.Batch || c.Encoding != want.Encoding || c.Compression != want.Compression || c.AvroCodec != want.AvroCodec ||
		c.Retry != want.Retry || c.MaxBufferedBytes != want.MaxBufferedBytes || c.MaxInFlight != want.MaxInFlight {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
}
