package schemas

import (
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// Test hooks into a Registry's cache.

// SetRegistryClock sets the clock that refusals expire by.
func SetRegistryClock(r *Registry, now func() time.Time) { r.now = now }

// SetRegistryBudget sets the cache's byte budget.
func SetRegistryBudget(r *Registry, bytes int) { r.budget = bytes }

// RegistryCost returns what the cache holds, in its own count, and how
// many ids.
func RegistryCost(r *Registry) (cost, ids int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cost, len(r.cache)
}

// ParseWriterSchema exposes parseWriterSchema's verdict on Avro text.
func ParseWriterSchema(text string) (ok bool, why string) {
	w := parseWriterSchema(srAvro(text))
	return w.bad == "", w.bad
}

func srAvro(text string) sr.Schema { return sr.Schema{Schema: text, Type: sr.TypeAvro} }

// DecodeWithWriterSchema decodes payload as a registry codec would under
// a writer schema of that text.
func DecodeWithWriterSchema(text string, payload []byte) (*Event, error) {
	w := parseWriterSchema(srAvro(text))
	if w.bad != "" {
		return nil, decodeError(errorString(w.bad))
	}
	if w.event {
		return decodeAvroBody(w.avro, payload)
	}
	return decodeAvroGeneric(w.avro, payload)
}

type errorString string

func (e errorString) Error() string { return string(e) }
