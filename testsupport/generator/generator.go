// Package generator makes realistic, reproducible lead events for the demo
// and for tests and benchmarks: several accounts and flows, per-resource
// increasing sequence numbers, PII in lead_data, and an occasional exact
// duplicate such as an at-least-once producer sends.
package generator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/firehose/firehose/schemas"
)

// Generator is deterministic for a given seed and clock. It is not safe
// for concurrent use.
type Generator struct {
	rng       *rand.Rand
	resources []resource
	// DuplicateRate is the share of events that repeat the previous
	// event of a resource exactly (same event_id and sequence). Default
	// 0.01.
	DuplicateRate float64
	// Now is the clock of event timestamps; default time.Now.
	Now  func() time.Time
	next int
}

type resource struct {
	id, account, flow string
	seq               int64
	last              *schemas.Event
	first, lastName   string
	email, phone, ssn string
	state, zip        string
}

var (
	eventTypes = []string{"lead.created", "lead.updated", "recipient.delivered", "recipient.delivered", "recipient.failed",
		"recipient.skipped", "filter.passed", "filter.rejected", "feedback.received", "deal.won"}
	outcomes   = []string{"success", "success", "success", "failure", "skip", "error"}
	firstNames = []string{"Jane", "John", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Kenji", "Fatima", "Liam"}
	lastNames  = []string{"Smith", "Garcia", "Chen", "Okafor", "Müller", "Rossi", "Kowalski", "Tanaka", "Haddad", "Brown"}
	states     = []string{"CA", "TX", "NY", "FL", "WA", "IL", "OH", "GA"}
	sources    = []string{"google", "facebook", "partner", "organic", "email"}
	entities   = []string{"buyer", "filter", "source", "recipient"}
)

// New returns a generator over the given number of resources spread over
// five accounts with three flows each.
func New(seed uint64, resources int) *Generator {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &Generator{rng: rng, DuplicateRate: 0.01, Now: time.Now}
	for i := range resources {
		acct := rng.IntN(5) + 1
		fn, ln := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		g.resources = append(g.resources, resource{
			id:       fmt.Sprintf("lead_%06d", i),
			account:  fmt.Sprintf("acc_%d", acct),
			flow:     fmt.Sprintf("flow_%d_%d", acct, rng.IntN(3)+1),
			first:    fn,
			lastName: ln,
			email:    fmt.Sprintf("%s.%s%d@example.com", lower(fn), lower(ln), rng.IntN(100)),
			phone:    fmt.Sprintf("%03d-%03d-%04d", 200+rng.IntN(800), rng.IntN(1000), rng.IntN(10000)),
			ssn:      fmt.Sprintf("%03d-%02d-%04d", 100+rng.IntN(800), rng.IntN(100), rng.IntN(10000)),
			state:    states[rng.IntN(len(states))],
			zip:      fmt.Sprintf("%05d", rng.IntN(100000)),
		})
	}
	return g
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Next returns the next event. Events of one resource come with strictly
// increasing sequence numbers, except for duplicates, which repeat the
// previous event of the resource unchanged.
func (g *Generator) Next() *schemas.Event {
	r := &g.resources[g.rng.IntN(len(g.resources))]
	if r.last != nil && g.rng.Float64() < g.DuplicateRate {
		return r.last
	}
	r.seq += int64(1 + g.rng.IntN(2)) // gaps are allowed
	g.next++
	dur := int64(50 + g.rng.IntN(900))
	e := &schemas.Event{
		EventID:      fmt.Sprintf("evt_%s_%d", r.id, r.seq),
		Timestamp:    g.Now().UTC().Truncate(time.Millisecond),
		AccountID:    r.account,
		ResourceID:   r.id,
		ResourceType: "lead",
		Sequence:     r.seq,
		EventType:    eventTypes[g.rng.IntN(len(eventTypes))],
		FlowID:       r.flow,
		LeadID:       r.id,
		EntityType:   entities[g.rng.IntN(len(entities))],
		EntityID:     fmt.Sprintf("ent_%d", g.rng.IntN(50)),
		Outcome:      outcomes[g.rng.IntN(len(outcomes))],
		DurationMS:   &dur,
	}
	meta, _ := json.Marshal(map[string]any{
		"price":    float64(g.rng.IntN(5000)) / 100,
		"source":   sources[g.rng.IntN(len(sources))],
		"campaign": fmt.Sprintf("cmp_%d", g.rng.IntN(20)),
		"attempt":  1 + g.rng.IntN(3),
		"reason":   "",
	})
	lead, _ := json.Marshal(map[string]any{
		"first_name": r.first,
		"last_name":  r.lastName,
		"email":      r.email,
		"phone":      r.phone,
		"ssn":        r.ssn,
		"state":      r.state,
		"zip":        r.zip,
		"address":    fmt.Sprintf("%d Main St", 1+g.rng.IntN(9999)),
		"consent":    true,
	})
	e.Metadata, e.LeadData = meta, lead
	r.last = e
	return e
}

// JSON returns the next event encoded as one line of JSON, without the
// newline.
func (g *Generator) JSON() []byte {
	b, _ := schemas.JSON{}.Append(nil, g.Next())
	return b
}

// Unique returns n events from a generator over the given number of
// resources with no duplicates: each resource's in increasing sequence.
func Unique(seed uint64, resources, n int) []*schemas.Event {
	g := New(seed, resources)
	g.DuplicateRate = 0
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}
