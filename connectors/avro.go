package connectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/firehose/firehose/schemas"
)

// DeliverySchema is the Avro schema of delivered events: the event schema
// (schemas/event.avsc) with a firehose_metadata record added.
var DeliverySchema = sync.OnceValues(func() (string, error) {
	var s map[string]any
	if err := json.Unmarshal([]byte(schemas.AvroSchema), &s); err != nil {
		return "", err
	}
	s["name"] = "DeliveredEvent"
	s["fields"] = append(s["fields"].([]any), map[string]any{
		"name": MetadataKey,
		"type": map[string]any{
			"type": "record", "name": "FirehoseMetadata",
			"fields": []any{
				map[string]any{"name": "batch_id", "type": "string"},
				map[string]any{"name": "sequence", "type": "long"},
				map[string]any{"name": "delivered_at", "type": map[string]any{"type": "long", "logicalType": "timestamp-millis"}},
			},
		},
	})
	b, err := json.Marshal(s)
	return string(b), err
})

// AvroOCF writes the batch as one Avro object container file whose
// schema is DeliverySchema. Its blocks are compressed by the codec
// (deflate, snappy or null), so the connector's compression is usually
// none.
type AvroOCF struct {
	codec       *goavro.Codec
	compression string
}

// NewAvroOCF returns the encoder for a block codec name.
func NewAvroOCF(blockCodec string) (*AvroOCF, error) {
	schema, err := DeliverySchema()
	if err != nil {
		return nil, err
	}
	c, err := goavro.NewCodec(schema)
	if err != nil {
		return nil, fmt.Errorf("avro delivery schema: %w", err)
	}
	switch blockCodec {
	case "deflate", "snappy", "null":
	default:
		return nil, fmt.Errorf("unknown avro codec %q", blockCodec)
	}
	return &AvroOCF{codec: c, compression: blockCodec}, nil
}

// Encode implements Encoder.
func (a *AvroOCF) Encode(dst []byte, b *Batch) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w, err := goavro.NewOCFWriter(goavro.OCFConfig{W: buf, Codec: a.codec, CompressionName: a.compression})
	if err != nil {
		return nil, err
	}
	records := make([]any, len(b.Events))
	for i, e := range b.Events {
		m, err := schemas.AvroNative(e)
		if err != nil {
			return nil, err
		}
		m[MetadataKey] = map[string]any{"batch_id": b.ID, "sequence": int64(i), "delivered_at": b.SealedAt.UTC()}
		records[i] = m
	}
	if err := w.Append(records); err != nil {
		return nil, fmt.Errorf("avro: %w", err)
	}
	return buf.Bytes(), nil
}

// ContentType implements Encoder.
func (a *AvroOCF) ContentType() string { return "application/avro" }

// Extension implements Encoder.
func (a *AvroOCF) Extension() string { return ".avro" }
