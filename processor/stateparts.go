package processor

import (
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// partMap is a stage's state per raw partition (dedupe's and the profiles
// stage's): put when the stateStore has read it from the state topic,
// forgotten when the partition goes.
type partMap[P any] struct {
	// m is read for every record and replaced, under mu, only when
	// partitions come and go: a copy on write, so that readers on
	// several partitions share no lock.
	m  atomic.Pointer[map[int32]*P]
	mu sync.Mutex
}

func newPartMap[P any]() *partMap[P] {
	pm := &partMap[P]{}
	pm.m.Store(&map[int32]*P{})
	return pm
}

func (pm *partMap[P]) get(partition int32) *P {
	return (*pm.m.Load())[partition]
}

// update replaces m with a changed copy; mu must be held.
func (pm *partMap[P]) update(change func(m map[int32]*P)) {
	m := maps.Clone(*pm.m.Load())
	change(m)
	pm.m.Store(&m)
}

// put replaces a partition's state with a freshly loaded one.
func (pm *partMap[P]) put(partition int32, v *P) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.update(func(m map[int32]*P) { m[partition] = v })
}

// drop forgets partitions that were revoked or lost.
func (pm *partMap[P]) drop(partitions []int32) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.update(func(m map[int32]*P) {
		for _, p := range partitions {
			delete(m, p)
		}
	})
}

// each calls fn for every partition's state, with the map locked against
// puts and drops.
func (pm *partMap[P]) each(fn func(*P)) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, v := range *pm.m.Load() {
		fn(v)
	}
}

// partitions returns the partitions held, in order.
func (pm *partMap[P]) partitions() []int32 {
	return slices.Sorted(maps.Keys(*pm.m.Load()))
}

// stateKeyPrefix starts the key of a stage's state for one (account,
// resource): 0xFE never occurs in UTF-8, and decoders reject ids that are
// not UTF-8, so such a key is never an id alone, as keys were before
// state was kept per account.
const stateKeyPrefix = "\xfe"

// appendStateKey appends the state key of a resource of an account: the
// prefix, the account id's length, the account id, the resource id. Two
// accounts' resources of one id have distinct keys, and no choice of ids
// makes two pairs meet.
func appendStateKey(dst []byte, account, resource string) []byte {
	dst = append(dst, stateKeyPrefix...)
	dst = binary.AppendUvarint(dst, uint64(len(account)))
	dst = append(dst, account...)
	return append(dst, resource...)
}

// splitStateKey returns the account and resource ids of a state key, and
// false for a key of the earlier form (a resource id alone).
func splitStateKey(key string) (account, resource string, ok bool) {
	rest, ok := strings.CutPrefix(key, stateKeyPrefix)
	if !ok {
		return "", "", false
	}
	n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
	if w <= 0 || uint64(len(rest)-w) < n {
		return "", "", false
	}
	rest = rest[w:]
	return rest[:n], rest[n:], true
}
