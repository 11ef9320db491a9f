package connectors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// packValues are record values as the events topic holds them: the
// processor's, and some that cannot be spliced (line breaks between
// tokens, a redriven delivered event carrying firehose_metadata).
func packValues(t testing.TB, n int) [][]byte {
	g := generator.New(11, 40)
	var values [][]byte
	for i := range n {
		v, err := schemas.JSON{}.Append(nil, g.Next())
		if err != nil {
			t.Fatal(err)
		}
		switch i % 97 {
		case 13:
			v = append([]byte("{\n"), v[1:]...)
		case 41:
			v = append(v[:len(v)-1:len(v)-1], `,"firehose_metadata":{"batch_id":"old","sequence":3}}`...)
		}
		values = append(values, v)
	}
	return values
}

// cutBatch runs the values through a batcher, packing when packAt > 0,
// and returns the one batch it seals.
func cutBatch(t testing.TB, values [][]byte, splice bool, packAt int) (*batcher, *Batch) {
	bt := &batcher{name: "c", bounds: Bounds{MaxEvents: 1 << 30, MaxBytes: 1 << 40, MaxAge: time.Hour}, ext: ".ndjson",
		splice: splice, recordCuts: true, pack: packAt > 0, packAt: packAt, decode: schemas.JSON{}.Decode}
	ps := newPartState()
	now := time.Unix(1000, 0)
	for i, v := range values {
		r := ps.own(&kgo.Record{Topic: "events", Partition: 2, Offset: 100 + int64(i)*2, Timestamp: now.Add(time.Duration(i)),
			Key: []byte(fmt.Sprint("r", i%7)), Value: v, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(fmt.Sprint(i))}}})
		if i%5 == 0 {
			r.Key, r.Headers = nil, nil
		}
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		bt.add(ps, r, e, nil, now)
	}
	bt.sealAll(ps)
	if len(ps.sealed) != 1 {
		t.Fatalf("%d batches sealed, want 1", len(ps.sealed))
	}
	b := ps.sealed[0]
	b.SealedAt = time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC)
	return bt, b
}

// A packed batch is written exactly as the same batch unpacked: same id,
// same events in the same order with the same sequence numbers, in every
// encoding; and it held a fraction of the bytes while it was open.
func TestPackedBatchEncodesAsUnpacked(t *testing.T) {
	values := packValues(t, 3000)
	for _, tc := range []struct {
		enc    string
		splice bool
	}{{"ndjson", true}, {"json", true}, {"ndjson", false}, {"avro", false}, {"parquet", false}} {
		t.Run(fmt.Sprint(tc.enc, "/splice=", tc.splice), func(t *testing.T) {
			_, whole := cutBatch(t, values, tc.splice, 0)
			bt, packed := cutBatch(t, values, tc.splice, 64<<10)
			if len(packed.packs) < 5 || len(packed.Records) != 0 {
				t.Fatalf("%d packs and %d records unpacked: the batch did not pack", len(packed.packs), len(packed.Records))
			}
			if packed.ID != whole.ID || packed.Len() != whole.Len() || packed.Key != whole.Key || len(packed.Times) != len(whole.Times) {
				t.Fatalf("packed batch %s (%d events, %s) differs from %s (%d, %s)", packed.ID, packed.Len(), packed.Key, whole.ID, whole.Len(), whole.Key)
			}
			if packed.size*3 > packed.raw || bt.pending != int64(packed.size) {
				t.Fatalf("packed batch holds %d bytes of %d (pending %d)", packed.size, packed.raw, bt.pending)
			}
			enc, comp, err := NewBody(tc.enc, "none", "null")
			if err != nil {
				t.Fatal(err)
			}
			want, err := EncodeBody(enc, comp, whole)
			if err != nil {
				t.Fatal(err)
			}
			got, err := EncodeBody(enc, comp, packed)
			if err != nil {
				t.Fatal(err)
			}
			if tc.enc == "avro" {
				// Each file has its own sync marker, and a packed batch
				// writes a block per pack: compare what a reader reads.
				want, got = avroRecords(t, want), avroRecords(t, got)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("packed body (%d bytes) differs from the unpacked one (%d bytes)", len(got), len(want))
			}
		})
	}
}

func avroRecords(t *testing.T, body []byte) []byte {
	t.Helper()
	d, err := ocf.NewDecoder(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for d.HasNext() {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = fmt.Appendf(out, "%v\n", m)
	}
	if d.Error() != nil {
		t.Fatal(d.Error())
	}
	return out
}

// Packing keeps every part of a record a destination or a dead letter
// needs: offset, timestamp, key and value (nil told from empty), headers
// and the transformed event.
func FuzzPackRoundTrip(f *testing.F) {
	f.Add([]byte("k\x00v\x01h"), uint8(3), true)
	f.Add([]byte{}, uint8(1), false)
	f.Add([]byte("{\"a\":1}"), uint8(40), true)
	f.Fuzz(func(t *testing.T, seed []byte, n uint8, shape bool) {
		count := int(n)%50 + 1
		var recs []*kgo.Record
		var shaped [][]byte
		if shape {
			shaped = make([][]byte, count)
		}
		off := int64(len(seed)) * 3
		for i := range count {
			part := seed
			if len(seed) > 0 {
				part = seed[i%len(seed):]
			}
			r := &kgo.Record{Topic: "t", Partition: 4, Offset: off, Timestamp: time.Unix(int64(i)*7, int64(i))}
			off += int64(i%3) + 1
			if i%3 != 0 {
				r.Key = part[:len(part)/2]
			}
			if i%4 != 1 {
				r.Value = part
			}
			for h := range i % 3 {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(part[:min(h, len(part))]), Value: part[len(part)/3:]})
			}
			if shape {
				shaped[i] = append([]byte("{}"), part...)
			}
			recs = append(recs, r)
		}
		p := packRecords(recs, make([]*schemas.Event, count), shaped)
		got, events, gotShaped, err := p.unpack(new(unpacked), "t", 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != count || len(events) != count {
			t.Fatalf("%d records back of %d", len(got), count)
		}
		for i, r := range recs {
			g := got[i]
			if g.Offset != r.Offset || !g.Timestamp.Equal(r.Timestamp) || g.Topic != "t" || g.Partition != 4 ||
				!sameBytes(g.Key, r.Key) || !sameBytes(g.Value, r.Value) || len(g.Headers) != len(r.Headers) {
				t.Fatalf("record %d: got %+v, want %+v", i, g, r)
			}
			for j, h := range r.Headers {
				if g.Headers[j].Key != h.Key || !bytes.Equal(g.Headers[j].Value, h.Value) {
					t.Fatalf("record %d header %d: %+v, want %+v", i, j, g.Headers[j], h)
				}
			}
			if shape && !bytes.Equal(gotShaped[i], shaped[i]) {
				t.Fatalf("record %d shaped %q, want %q", i, gotShaped[i], shaped[i])
			}
		}
		if !shape && gotShaped != nil {
			t.Fatal("transformed events came back from a pack without them")
		}
	})
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// A pack that does not read (it never leaves the process, but its reader
// is a parser all the same) is an error, never a panic or a huge
// allocation.
func FuzzUnpack(f *testing.F) {
	good := packRecords([]*kgo.Record{{Offset: 5, Key: []byte("k"), Value: []byte(`{"a":1}`), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}}, []*schemas.Event{nil}, nil)
	raw, _ := s2.Decode(nil, good.data[4:])
	f.Add(raw, uint16(1), false)
	f.Add(binary.AppendUvarint([]byte{0, 1, 2}, 1<<62), uint16(3), false)
	f.Add(good.data, uint16(1), true)
	f.Fuzz(func(t *testing.T, raw []byte, n uint16, asIs bool) {
		// Blocks as packRecords writes them, holding any bytes; or any
		// bytes as the blocks.
		data := raw
		if !asIs {
			block := s2.Encode(nil, raw)
			data = binary.BigEndian.AppendUint32(nil, uint32(len(block)))
			data = append(data, block...)
		}
		p := pack{data: data, first: 1, n: int(n % 1000)}
		recs, _, _, err := p.unpack(new(unpacked), "t", 0, schemas.JSON{}.Decode)
		if err == nil && len(recs) != p.n {
			t.Fatalf("%d records of %d", len(recs), p.n)
		}
	})
}

// Over the cap, open object batches pack before any is sealed, so a
// connector gets the objects it asked for while holding less.
func TestOverCapPacksBeforeSealing(t *testing.T) {
	bt := &batcher{name: "c", bounds: Bounds{MaxEvents: 1 << 30, MaxBytes: 1 << 40, MaxAge: time.Hour}, ext: ".ndjson",
		splice: true, recordCuts: true, pack: true, packAt: PackBytes, decode: schemas.JSON{}.Decode, limit: 1 << 20}
	parts := map[tp]*partState{}
	values := packValues(t, 6000)
	now := time.Unix(1000, 0)
	for p := range int32(3) {
		ps := newPartState()
		parts[tp{"events", p}] = ps
		for i, v := range values[p*2000 : (p+1)*2000] {
			r := ps.own(&kgo.Record{Topic: "events", Partition: p, Offset: int64(i), Value: v})
			e, _ := schemas.JSON{}.Decode(v)
			bt.add(ps, r, e, nil, now)
			bt.sealOverCap(parts)
		}
	}
	raw := 0
	for _, ps := range parts {
		if len(ps.sealed) != 0 || len(ps.open) != 1 {
			t.Fatalf("%d sealed, %d open: the cap sealed a batch that could pack", len(ps.sealed), len(ps.open))
		}
		for _, b := range ps.open {
			raw += b.bytes
		}
	}
	if bt.buffered > bt.limit || raw < 2*int(bt.limit) {
		t.Fatalf("open batches hold %d bytes of %d, cap %d", bt.buffered, raw, bt.limit)
	}
}
