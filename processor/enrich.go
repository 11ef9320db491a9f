package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// EnrichmentKey is the top-level field the enricher adds.
const EnrichmentKey = "enrichment"

// Enricher adds an "enrichment" object to each event: the flow's and the
// account's reference data, static tags, processed_at and latency_ms. Its
// reference tables come from config and, optionally, from a compacted
// topic that changes them without a restart. It is safe for concurrent
// use.
type Enricher struct {
	// The reference tables, id to json.RawMessage: written seldom (by
	// config and the reference topic) and read for every event on every
	// partition, which sync.Map does without a lock or a shared write.
	flows, accounts sync.Map
	tags            json.RawMessage
	procTime        bool
	now             func() time.Time

	// The processed_at text of the last millisecond seen, reused while
	// the clock stays in it; an atomic pointer rather than a lock, as
	// every event on every partition reads it.
	last atomic.Pointer[stamp]
}

// stamp is a millisecond and its quoted JSON timestamp.
type stamp struct {
	ms   int64
	text []byte
}

// NewEnricher builds an enricher from config.
func NewEnricher(c Enrich, now func() time.Time) (*Enricher, error) {
	en := &Enricher{
		procTime: c.ProcessingTime == nil || *c.ProcessingTime,
		now:      now,
	}
	for id, v := range c.Flows {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("processor.enrich.flows.%s: %w", id, err)
		}
		en.flows.Store(id, json.RawMessage(b))
	}
	for id, v := range c.Accounts {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("processor.enrich.accounts.%s: %w", id, err)
		}
		en.accounts.Store(id, json.RawMessage(b))
	}
	if len(c.Tags) > 0 {
		b, err := json.Marshal(c.Tags)
		if err != nil {
			return nil, err
		}
		en.tags = b
	}
	return en, nil
}

// Empty reports whether the enricher would add nothing.
func (en *Enricher) Empty() bool {
	return !en.procTime && en.tags == nil && empty(&en.flows) && empty(&en.accounts)
}

func empty(m *sync.Map) bool {
	none := true
	m.Range(func(any, any) bool { none = false; return false })
	return none
}

func lookup(m *sync.Map, id string) (json.RawMessage, bool) {
	v, ok := m.Load(id)
	if !ok {
		return nil, false
	}
	return v.(json.RawMessage), true
}

// Name implements Stage.
func (en *Enricher) Name() string { return "enrich" }

// Apply implements Stage.
func (en *Enricher) Apply(_ *kgo.Record, e *schemas.Event) (bool, error) {
	// Built on the stack, and kept as an exact copy: it stays with the
	// event until the event is encoded.
	var buf [512]byte
	b := append(buf[:0], '{')
	add := func(key string, v []byte) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = append(b, v...)
	}
	if e.FlowID != "" {
		if v, ok := lookup(&en.flows, e.FlowID); ok {
			add("flow", v)
		}
	}
	if v, ok := lookup(&en.accounts, e.AccountID); ok {
		add("account", v)
	}
	if en.tags != nil {
		add("tags", en.tags)
	}
	if en.procTime {
		now := en.now()
		add("processed_at", en.formatted(now))
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, `"latency_ms":`...)
		b = strconv.AppendInt(b, now.Sub(e.Timestamp).Milliseconds(), 10)
	}
	if len(b) == 1 {
		return true, nil
	}
	b = append(b, '}')
	e.Extra.Set(EnrichmentKey, bytes.Clone(b))
	return true, nil
}

// formatted returns now as a quoted JSON timestamp, formatting it only when
// the millisecond changed.
func (en *Enricher) formatted(now time.Time) []byte {
	ms := now.UnixMilli()
	if s := en.last.Load(); s != nil && s.ms == ms {
		return s.text
	}
	text := schemas.AppendTimestamp(append(make([]byte, 0, 32), '"'), now)
	text = append(text, '"')
	en.last.Store(&stamp{ms, text})
	return text
}

// Set stores reference data: kind is flow or account.
func (en *Enricher) Set(kind, id string, v json.RawMessage) error {
	m, err := en.table(kind)
	if err != nil {
		return err
	}
	if v == nil {
		m.Delete(id)
		return nil
	}
	if !json.Valid(v) || !strings.HasPrefix(strings.TrimSpace(string(v)), "{") {
		return fmt.Errorf("reference data for %s:%s is not a JSON object", kind, id)
	}
	m.Store(id, append(json.RawMessage(nil), v...))
	return nil
}

func (en *Enricher) table(kind string) (*sync.Map, error) {
	switch kind {
	case "flow":
		return &en.flows, nil
	case "account":
		return &en.accounts, nil
	}
	return nil, fmt.Errorf("unknown reference kind %q (want flow or account)", kind)
}

// Follow reads the compacted reference topic from its start and applies
// every record (key "flow:<id>" or "account:<id>", a JSON object value, or
// no value to delete) until ctx ends. A bad record is logged and skipped.
// ready is closed once the topic has been read to its end at start.
func (en *Enricher) Follow(ctx context.Context, kopts []kgo.Opt, topic string, log *slog.Logger, ready chan<- struct{}) error {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("reference topic %s: %w", topic, err)
	}
	defer cl.Close()
	end, err := stableBounds(ctx, cl, topic)
	if err != nil {
		return fmt.Errorf("reference topic %s: %w", topic, err)
	}
	signal := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
	}
	if caughtUp(end, nil) {
		signal()
	}
	seen := map[int32]int64{}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("reference topic fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			seen[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			kind, id, ok := strings.Cut(string(r.Key), ":")
			if !ok {
				log.Warn("reference record key is not kind:id; skipped", "key", string(r.Key), "offset", r.Offset)
				return
			}
			if err := en.Set(kind, id, r.Value); err != nil {
				log.Warn("reference record skipped", "key", string(r.Key), "err", err)
			}
		})
		if caughtUp(end, seen) {
			signal()
		}
	}
}
