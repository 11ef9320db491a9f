package kafkaclient

import (
	"iter"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Values yields the values of a poll's records, for schemas.Resolve.
func Values(fetches kgo.Fetches) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		it := fetches.RecordIter()
		for !it.Done() {
			if !yield(it.Next().Value) {
				return
			}
		}
	}
}

// Compression is the producer codec for a topology.events.compression
// name; snappy for an unknown one (config validation refuses those).
func Compression(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "gzip":
		return kgo.GzipCompression()
	}
	return kgo.SnappyCompression()
}
