// Package connectortest is the conformance suite every destination passes
// against its real test server, and the helpers tests use to read back
// what a destination stored: decompress, decode, compare.
package connectortest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/archive"
	"github.com/firehose/firehose/schemas"
)

// Delivered is one event as a destination received it.
type Delivered struct {
	Event       *schemas.Event
	BatchID     string
	Sequence    int64
	DeliveredAt time.Time
}

// Decompress undoes a connector compression.
func Decompress(body []byte, compression string) ([]byte, error) {
	return archive.Decompress(body, compression)
}

// Decode reads back a delivered body.
func Decode(body []byte, encoding, compression string) ([]Delivered, error) {
	if encoding == "parquet" {
		return decodeParquet(body) // compressed inside
	}
	raw, err := Decompress(body, compression)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", compression, err)
	}
	switch encoding {
	case "ndjson":
		var out []Delivered
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			d, err := decodeJSON(sc.Bytes())
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, sc.Err()
	case "json":
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, fmt.Errorf("not a JSON array: %w", err)
		}
		out := make([]Delivered, 0, len(arr))
		for _, item := range arr {
			d, err := decodeJSON(item)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	case "avro":
		r, err := goavro.NewOCFReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("not an Avro container file: %w", err)
		}
		var out []Delivered
		for r.Scan() {
			native, err := r.Read()
			if err != nil {
				return nil, err
			}
			m := native.(map[string]any)
			meta, _ := m[connectors.MetadataKey].(map[string]any)
			e, err := fromGoavro(m)
			if err != nil {
				return nil, err
			}
			d := Delivered{Event: e}
			d.BatchID, _ = meta["batch_id"].(string)
			d.Sequence, _ = meta["sequence"].(int64)
			d.DeliveredAt, _ = meta["delivered_at"].(time.Time)
			out = append(out, d)
		}
		return out, r.Err()
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

func decodeJSON(line []byte) (Delivered, error) {
	e, err := schemas.JSON{}.Decode(line)
	if err != nil {
		return Delivered{}, fmt.Errorf("delivered event does not decode: %w", err)
	}
	var meta struct {
		BatchID     string    `json:"batch_id"`
		Sequence    int64     `json:"sequence"`
		DeliveredAt time.Time `json:"delivered_at"`
	}
	raw := e.Extra.Get(connectors.MetadataKey)
	if raw == nil {
		return Delivered{}, fmt.Errorf("event %s has no %s", e.EventID, connectors.MetadataKey)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return Delivered{}, err
	}
	e.Extra.Delete(connectors.MetadataKey)
	return Delivered{Event: e, BatchID: meta.BatchID, Sequence: meta.Sequence, DeliveredAt: meta.DeliveredAt}, nil
}

// fromGoavro reads an event from goavro's native form of DeliverySchema,
// through its JSON form, so that the reader shares no code with the
// hamba/avro writer.
func fromGoavro(m map[string]any) (*schemas.Event, error) {
	obj := map[string]any{}
	for k, v := range m {
		if k == connectors.MetadataKey || v == nil {
			continue
		}
		if u, ok := v.(map[string]any); ok { // a union: {"string": "..."}
			for _, x := range u {
				v = x
			}
		}
		switch k {
		case "timestamp":
			v = v.(time.Time).UTC().Format(schemas.TimestampLayout)
		case "metadata", "lead_data":
			v = json.RawMessage(v.(string))
		case "extra":
			var extra map[string]json.RawMessage
			if err := json.Unmarshal([]byte(v.(string)), &extra); err != nil {
				return nil, fmt.Errorf("extra: %w", err)
			}
			for ek, ev := range extra {
				obj[ek] = ev
			}
			continue
		}
		obj[k] = v
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return schemas.JSON{}.Decode(b)
}
