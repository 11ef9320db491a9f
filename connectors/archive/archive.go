// Package archive reads back the objects Firehose's object destinations
// wrote (NDJSON, JSON arrays, Avro container files, Parquet; gzip, zstd,
// snappy, lz4 or none) and backfills their events through a connector as
// a replay job: for ranges that Kafka no longer holds.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/hamba/avro/v2/ocf"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
)

// Source lists and reads an archive's objects.
type Source interface {
	// List returns the names of the objects, in name order.
	List(ctx context.Context) ([]string, error)
	Read(ctx context.Context, name string) ([]byte, error)
}

// Dir is an archive in a local directory (a file connector's), read
// recursively.
type Dir string

// List implements Source.
func (d Dir) List(context.Context) ([]string, error) {
	var out []string
	err := filepath.WalkDir(string(d), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return err
		}
		rel, err := filepath.Rel(string(d), p)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	slices.Sort(out)
	return out, err
}

// Read implements Source.
func (d Dir) Read(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), filepath.FromSlash(name)))
}

// maxObject bounds an object read back: a batch is at most max_bytes of
// events before compression, which configs keep far below this.
const maxObject = 1 << 30

// Readable reports whether name is an object Decode reads: one a live
// delivery wrote, with a known encoding and compression (a replay job's
// objects are left out: their events are in the live ones).
func Readable(name string) bool {
	enc, _, ok := kinds(name)
	return ok && enc != "" && !strings.Contains(filepath.Base(name), ".replay-")
}

// kinds returns the encoding and compression name's extensions say.
func kinds(name string) (encoding, compression string, ok bool) {
	base := filepath.Base(name)
	for _, c := range [][2]string{{".gz", "gzip"}, {".zst", "zstd"}, {".sz", "snappy"}, {".lz4", "lz4"}} {
		if b, found := strings.CutSuffix(base, c[0]); found {
			base, compression = b, c[1]
			break
		}
	}
	for _, e := range []string{"ndjson", "json", "avro", "parquet"} {
		if strings.HasSuffix(base, "."+e) {
			return e, compression, e != "parquet" || compression == ""
		}
	}
	return "", "", false
}

// Decode reads back the events of an object named name, with their
// firehose_metadata removed.
func Decode(name string, body []byte) ([]*schemas.Event, error) {
	enc, comp, ok := kinds(name)
	if !ok {
		return nil, fmt.Errorf("%s: not an object Firehose writes (encoding and compression unknown from its name)", name)
	}
	raw, err := Decompress(body, comp)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, comp, err)
	}
	var evs []*schemas.Event
	switch enc {
	case "ndjson":
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 64<<20)
		for line := 1; sc.Scan(); line++ {
			e, err := schemas.JSON{}.Decode(sc.Bytes())
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %w", name, line, err)
			}
			evs = append(evs, e)
		}
		err = sc.Err()
	case "json":
		var items []json.RawMessage
		if err = json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array: %w", name, err)
		}
		for i, item := range items {
			e, err := schemas.JSON{}.Decode(item)
			if err != nil {
				return nil, fmt.Errorf("%s item %d: %w", name, i, err)
			}
			evs = append(evs, e)
		}
	case "avro":
		evs, err = decodeAvro(raw)
	case "parquet":
		evs, err = decodeParquet(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, e := range evs {
		e.Extra.Delete(connectors.MetadataKey) // a new delivery gives new metadata
	}
	return evs, nil
}

// Decompress undoes a connector compression (gzip, zstd, snappy, lz4;
// "" or none: the body as it is), reading at most 1 GiB.
func Decompress(body []byte, comp string) ([]byte, error) {
	var r io.Reader
	switch comp {
	case "", "none":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case "snappy":
		r = s2.NewReader(bytes.NewReader(body))
	case "lz4":
		r = lz4.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("unknown compression %q", comp)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxObject+1))
	if err == nil && len(out) > maxObject {
		err = fmt.Errorf("more than %d bytes decompressed", maxObject)
	}
	return out, err
}

// avroDelivered is one record of connectors.DeliverySchema, its metadata
// left unread.
type avroDelivered struct {
	schemas.AvroRecord
}

func decodeAvro(raw []byte) ([]*schemas.Event, error) {
	d, err := ocf.NewDecoder(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not an Avro container file: %w", err)
	}
	var out []*schemas.Event
	for d.HasNext() {
		var r avroDelivered
		if err := d.Decode(&r); err != nil {
			return nil, fmt.Errorf("avro record %d: %w", len(out), err)
		}
		e, err := schemas.FromAvro(&r.AvroRecord)
		if err != nil {
			return nil, fmt.Errorf("avro record %d: %w", len(out), err)
		}
		out = append(out, e)
	}
	return out, d.Error()
}

func decodeParquet(raw []byte) ([]*schemas.Event, error) {
	var out []*schemas.Event
	err := EachParquetRow(raw, func(cols map[string]arrow.Array, row int) error {
		if row == 0 {
			for _, need := range []string{"event_id", "timestamp", "account_id", "resource_id", "sequence", "event_type"} {
				if cols[need] == nil {
					return fmt.Errorf("no column %s: a transformed connector's files hold its shape, not the events", need)
				}
			}
		}
		e, err := ParquetEvent(cols, row)
		if err != nil {
			return fmt.Errorf("row %d: %w", len(out), err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// EachParquetRow calls fn with the columns of a Parquet file, by name, for
// each row: row counts from 0 in each record batch of the columns.
func EachParquetRow(raw []byte, fn func(cols map[string]arrow.Array, row int) error) error {
	rdr, err := file.NewParquetReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("not a Parquet file: %w", err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		return err
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return err
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 4096)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		cols := map[string]arrow.Array{}
		for i, f := range rec.Schema().Fields() {
			cols[f.Name] = rec.Column(i)
		}
		for row := range int(rec.NumRows()) {
			if err := fn(cols, row); err != nil {
				return err
			}
		}
	}
	return tr.Err()
}

// ParquetEvent is the event in row of a Parquet file's columns, by name.
func ParquetEvent(cols map[string]arrow.Array, row int) (*schemas.Event, error) {
	str := func(name string) string {
		b, _ := BytesAt(cols[name], row)
		return string(b)
	}
	e := &schemas.Event{
		EventID: str("event_id"), AccountID: str("account_id"), ResourceID: str("resource_id"), EventType: str("event_type"),
		ResourceType: str("resource_type"), FlowID: str("flow_id"), LeadID: str("lead_id"),
		EntityType: str("entity_type"), EntityID: str("entity_id"), Outcome: str("outcome"),
	}
	ts, ok := cols["timestamp"].(*array.Timestamp)
	if !ok {
		return nil, fmt.Errorf("timestamp is %s, not a timestamp", cols["timestamp"].DataType())
	}
	unit := ts.DataType().(*arrow.TimestampType).Unit
	e.Timestamp = time.Unix(0, int64(ts.Value(row))*int64(unit.Multiplier())).UTC()
	seq, ok := cols["sequence"].(*array.Int64)
	if !ok {
		return nil, fmt.Errorf("sequence is %s, not INT64", cols["sequence"].DataType())
	}
	e.Sequence = seq.Value(row)
	if d, ok := cols["duration_ms"].(*array.Int64); ok && d.IsValid(row) {
		v := d.Value(row)
		e.DurationMS = &v
	}
	if b, ok := BytesAt(cols["metadata"], row); ok {
		e.Metadata = json.RawMessage(b)
	}
	if b, ok := BytesAt(cols["lead_data"], row); ok {
		e.LeadData = json.RawMessage(b)
	}
	if b, ok := BytesAt(cols["extra"], row); ok && len(b) > 2 {
		// Decoded as an event's top level, the fields come back as Extra.
		x, err := schemas.JSON{}.Decode(fmt.Appendf(nil, `{"event_id":"x","timestamp":"2024-01-01T00:00:00Z","account_id":"a","resource_id":"r","sequence":0,"event_type":"t",%s`, b[1:]))
		if err != nil {
			return nil, fmt.Errorf("extra: %w", err)
		}
		e.Extra = x.Extra
	}
	return e, nil
}

// BytesAt returns the value of a string, binary or JSON column, and false
// for a null.
func BytesAt(col arrow.Array, row int) ([]byte, bool) {
	if col == nil || col.IsNull(row) {
		return nil, false
	}
	switch c := col.(type) {
	case *array.String:
		return []byte(c.Value(row)), true
	case *array.Binary:
		return c.Value(row), true
	case array.ExtensionArray:
		return BytesAt(c.Storage(), row)
	}
	return nil, false
}

// Backfill reads the events of src's objects whose timestamps are in
// [from, to) (to zero: no end), produces them to the connector's topic
// addressed to a new replay job (connectors.ReplayAddress), keyed by
// resource, and submits that job, which the connector's workers run. It
// returns the job's id and how many events it holds; progress, if set,
// hears of each object read.
func Backfill(ctx context.Context, cl *kgo.Client, src Source, c connectors.Config, from, to time.Time, progress func(object string, events int)) (string, int, error) {
	names, err := src.List(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("list the archive: %w", err)
	}
	id := connectors.NewReplayID()
	addr := connectors.ReplayAddress(c.Group, id)
	first, until := map[int32]int64{}, map[int32]int64{}
	total := 0
	for _, name := range names {
		if !Readable(name) {
			continue
		}
		body, err := src.Read(ctx, name)
		if err != nil {
			return "", 0, fmt.Errorf("read %s: %w", name, err)
		}
		evs, err := Decode(name, body)
		if err != nil {
			return "", 0, err
		}
		var recs []*kgo.Record
		for _, e := range evs {
			if e.Timestamp.Before(from) || !to.IsZero() && !e.Timestamp.Before(to) {
				continue
			}
			v, err := schemas.JSON{}.Append(nil, e)
			if err != nil {
				return "", 0, fmt.Errorf("%s: event %s: %w", name, e.EventID, err)
			}
			recs = append(recs, &kgo.Record{Topic: c.Topic, Key: []byte(e.ResourceID), Value: v,
				Headers: []kgo.RecordHeader{{Key: dlq.HeaderConnector, Value: []byte(addr)}}})
		}
		if len(recs) > 0 {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return "", 0, fmt.Errorf("produce the events of %s to %s: %w", name, c.Topic, err)
			}
			for _, r := range recs {
				if f, ok := first[r.Partition]; !ok || r.Offset < f {
					first[r.Partition] = r.Offset
				}
				until[r.Partition] = max(until[r.Partition], r.Offset+1)
			}
			total += len(recs)
		}
		if progress != nil {
			progress(name, len(recs))
		}
	}
	if total == 0 {
		return "", 0, errors.New("the archive holds no events in that time range")
	}
	if err := connectors.SubmitReplayOf(ctx, kadm.NewClient(cl), c.Group, c.Topic, id, first, until, true); err != nil {
		return "", 0, err
	}
	return id, total, nil
}
