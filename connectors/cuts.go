// Cuts: every object an object store holds is a batch whose offsets the
// consumer group's commit recorded before the object was written, so that
// whoever reads the partition again after a crash, a rebalance or a stop
// cuts the same batches and rewrites the same objects: no event ends in
// two objects, whatever closed its batch (count, bytes or age) and however
// many batches of the partition were in flight.

package connectors

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// A cut is a sealed batch of an object destination: the hash of its
// rendered path and the offsets of its first and last records. The batch
// holds every record of its path between them: a path's batches follow one
// another in a partition.
type cut struct {
	path        uint64
	first, last int64
}

// pendingCut is a cut a partition's commits carry until the commit point
// passes its last offset; recorded once a commit that held it succeeded.
// Its batch is delivered only then.
type pendingCut struct {
	cut
	recorded bool
}

// pathHash names a rendered path in a cut. 64 bits: two paths of one
// partition's pending batches never share one.
func pathHash(path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(path))
	return h.Sum64()
}

// MaxCutBytes bounds the cuts a commit's metadata holds (Kafka's
// offset.metadata.max.bytes is 4,096 by default). A batch whose cut does
// not fit waits, sealed, until earlier batches are delivered and their
// cuts leave the metadata: about 100 batches of a partition between its
// commit point and its newest delivery.
const MaxCutBytes = 3000

// CutReserve is the part of MaxCutBytes that only the oldest batch
// waiting for its cut may take: the batch that holds the partition's
// commit point must always find room, or the cuts of the later batches
// delivered meanwhile, which stay until the commit point passes them,
// would hold it for ever.
const CutReserve = 300

const cutsKey = " cuts="

// appendCuts appends the cuts to a commit's metadata, each relative to the
// committed offset base: cuts=<path hash>:<first-base>+<last-first>;…, in
// order, while they fit in MaxCutBytes, and past the first reserved ones
// (those recorded already, and the oldest waiting) only while they leave
// CutReserve free. It returns how many did.
func appendCuts(dst []byte, base int64, cuts []cut, reserved int) ([]byte, int) {
	if len(cuts) == 0 {
		return dst, 0
	}
	start := len(dst)
	dst = append(dst, cutsKey...)
	n := 0
	for _, c := range cuts {
		mark := len(dst)
		if n > 0 {
			dst = append(dst, ';')
		}
		dst = strconv.AppendUint(dst, c.path, 16)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, c.first-base, 10)
		dst = append(dst, '+')
		dst = strconv.AppendInt(dst, c.last-c.first, 10)
		limit := MaxCutBytes
		if n >= reserved {
			limit -= CutReserve
		}
		if len(dst)-start > limit {
			dst = dst[:mark]
			break
		}
		n++
	}
	if n == 0 {
		dst = dst[:start]
	}
	return dst, n
}

// parseCuts reads the cuts of a commit's metadata, committed at offset
// base. Metadata that holds none, or that a reader cannot parse (another
// tool's), gives none: batches are then cut as they come.
func parseCuts(meta string, base int64) ([]cut, error) {
	_, list, ok := strings.Cut(meta, cutsKey)
	if !ok {
		return nil, nil
	}
	var out []cut
	for _, item := range strings.Split(list, ";") {
		h, rest, ok1 := strings.Cut(item, ":")
		f, l, ok2 := strings.Cut(rest, "+")
		path, err1 := strconv.ParseUint(h, 16, 64)
		first, err2 := strconv.ParseInt(f, 10, 64)
		span, err3 := strconv.ParseInt(l, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || span < 0 {
			return nil, fmt.Errorf("commit metadata: bad cut %q", item)
		}
		out = append(out, cut{path: path, first: base + first, last: base + first + span})
	}
	return out, nil
}

// planned returns the recorded cut that a record of path at offset falls
// in, and whether there is one; plan is sorted by first offset. A cut
// that starts before the committed offset was delivered: its records read
// again are already in its object.
func planned(plan []cut, path uint64, offset int64) (cut, bool) {
	for _, c := range plan {
		if c.first > offset {
			break
		}
		if c.path == path && offset <= c.last {
			return c, true
		}
	}
	return cut{}, false
}
