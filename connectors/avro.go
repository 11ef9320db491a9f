package connectors

import (
	"io"

	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

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
	s["fields"] = append(s["fields"].([]any), metadataAvroField())
	b, err := json.Marshal(s)
	return string(b), err
})

// metadataAvroField is the firehose_metadata field of the Avro files.
func metadataAvroField() map[string]any {
	return map[string]any{
		"name": MetadataKey,
		"type": map[string]any{
			"type": "record", "name": "FirehoseMetadata",
			"fields": []any{
				map[string]any{"name": "batch_id", "type": "string"},
				map[string]any{"name": "sequence", "type": "long"},
				map[string]any{"name": "delivered_at", "type": map[string]any{"type": "long", "logicalType": "timestamp-millis"}},
				// The replay job that delivered the event again; null
				// for live delivery.
				map[string]any{"name": "replay", "type": []any{"null", "string"}, "default": nil},
			},
		},
	}
}

// AvroOCF writes the batch as one Avro object container file whose
// schema is DeliverySchema. Its blocks are compressed by the codec
// (deflate, snappy or null), so the connector's compression is usually
// none.
type AvroOCF struct {
	schema avro.Schema
	codec  ocf.CodecName
}

// deliveredRecord is one event of DeliverySchema.
type deliveredRecord struct {
	schemas.AvroRecord
	Meta deliveryMeta `avro:"firehose_metadata"`
}

type deliveryMeta struct {
	BatchID     string    `avro:"batch_id"`
	Sequence    int64     `avro:"sequence"`
	DeliveredAt time.Time `avro:"delivered_at"`
	Replay      *string   `avro:"replay"`
}

// NewAvroOCF returns the encoder for a block codec name.
func NewAvroOCF(blockCodec string) (*AvroOCF, error) {
	text, err := DeliverySchema()
	if err != nil {
		return nil, err
	}
	schema, err := avro.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("avro delivery schema: %w", err)
	}
	codec, err := ocfCodec(blockCodec)
	if err != nil {
		return nil, err
	}
	return &AvroOCF{schema: schema, codec: codec}, nil
}

// ocfCodec is the block codec of a config name.
func ocfCodec(name string) (ocf.CodecName, error) {
	switch name {
	case "deflate":
		return ocf.Deflate, nil
	case "snappy":
		return ocf.Snappy, nil
	case "null":
		return ocf.Null, nil
	}
	return "", fmt.Errorf("unknown avro codec %q", name)
}

// Encode implements Encoder: a block per run of the batch (one for a
// batch that was never packed).
func (a *AvroOCF) Encode(wr io.Writer, b *Batch) error {
	return writeOCF(wr, a.schema, a.codec, b, func(w *ocf.Encoder, run *Batch) error {
		for i, e := range run.Events {
			r, err := schemas.ToAvro(e)
			if err != nil {
				return err
			}
			if err := w.Encode(&deliveredRecord{AvroRecord: r, Meta: deliveryMeta{BatchID: run.ID, Sequence: int64(run.Seq + i), DeliveredAt: run.SealedAt.UTC(), Replay: replayOf(run)}}); err != nil {
				return fmt.Errorf("avro: %w", err)
			}
		}
		return nil
	})
}

// writeOCF writes batch b to wr as one Avro object container file, a
// block for each of its runs, whose records write writes.
func writeOCF(wr io.Writer, schema avro.Schema, codec ocf.CodecName, b *Batch, write func(*ocf.Encoder, *Batch) error) error {
	w, err := ocf.NewEncoderWithSchema(schema, wr, ocf.WithCodec(codec), ocf.WithBlockLength(max(b.Len(), 1)))
	if err != nil {
		return err
	}
	err = b.Each(func(run *Batch) error {
		if err := write(w, run); err != nil {
			return err
		}
		return w.Flush()
	})
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("avro: %w", err)
	}
	return nil
}

// ContentType implements Encoder.
func (a *AvroOCF) ContentType() string { return "application/avro" }

// Extension implements Encoder.
func (a *AvroOCF) Extension() string { return ".avro" }
