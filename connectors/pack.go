// Packs: an object store's batch that grows large holds its records
// compressed, so that a connector asking for warehouse-sized objects
// (128 MiB over 15 minutes, per partition and path) holds a fraction of
// their bytes while they fill. A batch is encoded only once it is sealed,
// because every event's firehose_metadata names the batch and the time it
// was sealed; the encoders then read it a pack at a time (Batch.Each), so
// encoding holds one pack's records at once, not the batch's.

package connectors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// PackBytes is how many bytes of records (values, or transformed events,
// with 96 bytes each for metadata) an open batch of an object store holds
// as they came before it packs them: it compresses them with S2 into one
// block and lets the records go. Batches smaller than this (the default
// max_bytes is 5 MB) are never packed, and cost nothing more, unless open
// batches hold more than max_buffered_bytes (see batcher.sealOverCap).
const PackBytes = 8 << 20

// minPack is the smallest run of records packed to bring open batches
// under max_buffered_bytes.
const minPack = 64 << 10

// timeBytes is what a packed event still holds: its timestamp (Batch.Times).
const timeBytes = 24

// pack is a run of a batch's records, compressed.
type pack struct {
	data  []byte // S2 block of the records, as appendPacked wrote them
	first int64  // offset of the first record
	n     int    // records
}

const (
	packNilKey = 1 << iota
	packNilValue
	packEvent  // the event was kept decoded: decode it again
	packShaped // the transformed event follows
)

// packBlock is how many bytes of records one S2 block of a pack holds:
// packing holds one such block uncompressed, not the whole pack.
const packBlock = 1 << 20

// packRecords packs records, with their events (nil: written from the
// record's value) and transformed events (nil without a transform). A
// pack is S2 blocks, each a 4-byte length and the block, each holding
// whole records.
func packRecords(recs []*kgo.Record, events []*schemas.Event, shaped [][]byte) pack {
	bufs := packBuffers.Get().(*[2][]byte)
	defer packBuffers.Put(bufs)
	raw, out := bufs[0][:0], bufs[1][:0]
	flush := func() {
		n := len(out)
		out = slices.Grow(out, 4+s2.MaxEncodedLen(len(raw)))
		block := s2.Encode(out[n+4:cap(out)], raw)
		binary.BigEndian.PutUint32(out[n:n+4], uint32(len(block)))
		out = out[:n+4+len(block)]
		raw = raw[:0]
	}
	prev := recs[0].Offset
	for i, r := range recs {
		var flags byte
		if r.Key == nil {
			flags |= packNilKey
		}
		if r.Value == nil {
			flags |= packNilValue
		}
		if events[i] != nil && shaped == nil {
			flags |= packEvent
		}
		if shaped != nil {
			flags |= packShaped
		}
		raw = append(raw, flags)
		raw = binary.AppendUvarint(raw, uint64(r.Offset-prev))
		prev = r.Offset
		raw = binary.AppendVarint(raw, r.Timestamp.UnixNano())
		raw = appendBytes(raw, r.Key)
		raw = appendBytes(raw, r.Value)
		raw = binary.AppendUvarint(raw, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			raw = appendBytes(raw, []byte(h.Key))
			raw = appendBytes(raw, h.Value)
		}
		if shaped != nil {
			raw = appendBytes(raw, shaped[i])
		}
		if len(raw) >= packBlock {
			flush()
		}
	}
	if len(raw) > 0 {
		flush()
	}
	data := slices.Clone(out)
	if cap(raw) <= 2*packBlock {
		bufs[0] = raw // a huge record's buffer is not kept
	}
	if cap(out) <= 2*PackBytes {
		bufs[1] = out
	}
	return pack{data: data, first: recs[0].Offset, n: len(recs)}
}

// packBuffers hold a block of records before it is compressed, and a
// pack's blocks until they are copied out at their size.
var packBuffers = sync.Pool{New: func() any { return new([2][]byte) }}

// unpacked is the memory of an unpacked run, reused once the run is done.
type unpacked struct {
	raw  []byte
	all  []kgo.Record
	recs []*kgo.Record
}

var unpackBuffers = sync.Pool{New: func() any { return new(unpacked) }}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

var errPack = errors.New("pack: corrupt")

// unpack returns the pack's records, of topic and partition; events
// decoded again with decode where they were kept, and the transformed
// events when there were any. The records live in u's memory.
func (p pack) unpack(u *unpacked, topic string, partition int32, decode func([]byte) (*schemas.Event, error)) ([]*kgo.Record, []*schemas.Event, [][]byte, error) {
	total := 0
	for data := p.data; len(data) > 0; {
		if len(data) < 4 || int(binary.BigEndian.Uint32(data)) > len(data)-4 {
			return nil, nil, nil, errPack
		}
		block := data[4 : 4+binary.BigEndian.Uint32(data)]
		data = data[4+len(block):]
		n, err := s2.DecodedLen(block)
		if err != nil || n > 64*packBlock {
			return nil, nil, nil, fmt.Errorf("%w: %v", errPack, err)
		}
		total += n
	}
	raw := slices.Grow(u.raw[:0], total)
	for data := p.data; len(data) > 0; {
		block := data[4 : 4+binary.BigEndian.Uint32(data)]
		data = data[4+len(block):]
		n, _ := s2.DecodedLen(block)
		if _, err := s2.Decode(raw[len(raw):len(raw)+n], block); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", errPack, err)
		}
		raw = raw[:len(raw)+n]
	}
	u.raw = raw
	if cap(u.all) < p.n {
		u.all, u.recs = make([]kgo.Record, p.n), make([]*kgo.Record, p.n)
	}
	var err error
	all, recs := u.all[:p.n], u.recs[:p.n]
	events := make([]*schemas.Event, p.n)
	var shaped [][]byte
	off := p.first
	for i := range all {
		if len(raw) == 0 {
			return nil, nil, nil, errPack
		}
		flags := raw[0]
		raw = raw[1:]
		delta, n := binary.Uvarint(raw)
		if n <= 0 {
			return nil, nil, nil, errPack
		}
		raw = raw[n:]
		off += int64(delta)
		ts, n := binary.Varint(raw)
		if n <= 0 {
			return nil, nil, nil, errPack
		}
		raw = raw[n:]
		r := &all[i]
		*r = kgo.Record{Topic: topic, Partition: partition, Offset: off, Timestamp: time.Unix(0, ts)}
		if r.Key, raw, err = takeBytes(raw); err != nil {
			return nil, nil, nil, err
		}
		if r.Value, raw, err = takeBytes(raw); err != nil {
			return nil, nil, nil, err
		}
		if flags&packNilKey != 0 {
			r.Key = nil
		}
		if flags&packNilValue != 0 {
			r.Value = nil
		}
		nh, n := binary.Uvarint(raw)
		if n <= 0 || nh > uint64(len(raw)) {
			return nil, nil, nil, errPack
		}
		raw = raw[n:]
		if nh > 0 {
			r.Headers = make([]kgo.RecordHeader, nh)
			for j := range r.Headers {
				var k []byte
				if k, raw, err = takeBytes(raw); err != nil {
					return nil, nil, nil, err
				}
				r.Headers[j].Key = string(k)
				if r.Headers[j].Value, raw, err = takeBytes(raw); err != nil {
					return nil, nil, nil, err
				}
			}
		}
		if flags&packShaped != 0 {
			if shaped == nil {
				shaped = make([][]byte, p.n)
			}
			if shaped[i], raw, err = takeBytes(raw); err != nil {
				return nil, nil, nil, err
			}
		}
		if flags&packEvent != 0 {
			e, err := decode(r.Value)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("pack: event at offset %d no longer decodes: %w", off, err)
			}
			// A delivered event sent round again loses its old metadata,
			// as when it was added (see batcher.add).
			e.Extra.Delete(MetadataKey)
			events[i] = e
		}
		recs[i] = r
	}
	return recs, events, shaped, nil
}

func takeBytes(raw []byte) ([]byte, []byte, error) {
	l, n := binary.Uvarint(raw)
	if n <= 0 || l > uint64(len(raw)-n) {
		return nil, nil, errPack
	}
	raw = raw[n:]
	return raw[:l:l], raw[l:], nil
}

// Len is how many events b holds.
func (b *Batch) Len() int { return b.packed + len(b.Events) }

// Each calls fn with b's events, in order, a run at a time: each run is a
// Batch like b whose Records, Events, Shaped and Times hold the run, and
// whose Seq is the position of its first event in b. A batch that was
// never packed is one run, b itself; a packed one is a run per pack, each
// unpacked only for fn: its records are valid only until fn returns. Encoders write a batch this way, so encoding a
// large batch holds one pack's records at a time.
func (b *Batch) Each(fn func(run *Batch) error) error {
	if len(b.packs) == 0 {
		return fn(b)
	}
	seq := 0
	u := unpackBuffers.Get().(*unpacked)
	defer func() {
		clear(u.all) // no values kept alive
		unpackBuffers.Put(u)
	}()
	for _, p := range b.packs {
		recs, events, shaped, err := p.unpack(u, b.Topic, b.Partition, b.decode)
		if err != nil {
			return err
		}
		run := *b
		run.packs, run.packed = nil, 0
		run.Records, run.Events, run.Shaped, run.Seq = recs, events, shaped, b.Seq+seq
		if len(b.Times) == b.Len() {
			run.Times = b.Times[seq : seq+p.n]
		}
		if err := fn(&run); err != nil {
			return err
		}
		seq += p.n
	}
	if len(b.Events) == 0 {
		return nil
	}
	run := *b
	run.packs, run.packed, run.Seq = nil, 0, b.Seq+seq
	if len(b.Times) == b.Len() {
		run.Times = b.Times[seq:]
	}
	return fn(&run)
}
