package connectors

import "testing"

// Config validation accepts these names; the runtime must implement each
// of them, and no other: the two cannot drift apart.
func TestVocabulariesAreImplemented(t *testing.T) {
	for _, e := range Encodings {
		for _, c := range AvroCodecs {
			for _, comp := range Compressions {
				if _, _, err := NewBody(e, comp, c); err != nil {
					t.Errorf("encoding %q with compression %q and avro codec %q: %v", e, comp, c, err)
				}
			}
		}
	}
	for _, c := range Compressions {
		if _, err := NewCompressor(c); err != nil {
			t.Errorf("compression %q: %v", c, err)
		}
		if _, ok := ParquetCompressions[c]; !ok {
			t.Errorf("compression %q is not a Parquet codec", c)
		}
	}
	for _, bad := range []string{"", "NDJSON", "orc", "csv"} {
		if _, _, err := NewBody(bad, DefaultCompression, DefaultAvroCodec); err == nil {
			t.Errorf("encoding %q is not in Encodings but builds", bad)
		}
	}
	for _, bad := range []string{"", "GZIP", "brotli", "deflate"} {
		if _, err := NewCompressor(bad); err == nil {
			t.Errorf("compression %q is not in Compressions but builds", bad)
		}
		if _, _, err := NewBody("parquet", bad, DefaultAvroCodec); err == nil {
			t.Errorf("parquet compression %q is not in Compressions but builds", bad)
		}
	}
	if _, err := NewEncoder("avro", "bzip2"); err == nil {
		t.Error(`avro codec "bzip2" is not in AvroCodecs but builds`)
	}
}

// A zero Config built in code runs on the defaults config fills.
func TestZeroConfigTakesTheDefaults(t *testing.T) {
	var c Config
	c.Defaults()
	want := Config{
		Batch:    Bounds{MaxEvents: DefaultBatchMaxEvents, MaxBytes: DefaultBatchMaxBytes, MaxAge: DefaultBatchMaxAge},
		Encoding: DefaultEncoding, Compression: DefaultCompression, AvroCodec: DefaultAvroCodec,
		Retry:            RetryPolicy{MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: DefaultRetryInitial, MaxBackoff: DefaultRetryMax},
		MaxBufferedBytes: DefaultMaxBufferedBytes, MaxInFlight: DefaultMaxInFlight,
	}
	if c.Batch != want.Batch || c.Encoding != want.Encoding || c.Compression != want.Compression || c.AvroCodec != want.AvroCodec ||
		c.Retry != want.Retry || c.MaxBufferedBytes != want.MaxBufferedBytes || c.MaxInFlight != want.MaxInFlight {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
}
