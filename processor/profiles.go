package processor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/filter"
	"github.com/firehose/firehose/schemas"
)

// The event types the profiles stage emits.
const (
	ProfileUpdated         = "profile.updated"
	ProfileSegmentsChanged = "profile.segments_changed"
)

// profileKeyPrefix starts the state-topic key of a profile. 0xFF never
// occurs in UTF-8, and the decoder rejects resource ids that are not
// UTF-8, so a profile's key can never be a resource's dedupe key.
const profileKeyPrefix = "\xffprofile:"

// Profiles is the profiles stage. It takes the profile changes out of the
// stream (they are coalesced, not emitted one by one), keeps each
// profile's property snapshot and pending changes per raw partition, and
// on Tick emits one profile.updated per changed profile and one
// profile.segments_changed per profile at rest whose membership changed.
//
// A profile is one account's resource: two accounts' profiles of one id
// never meet. Its state lives in memory and in the compacted state topic
// (key profileKeyPrefix + appendStateKey's key, written to the raw
// partition's number),
// inside the processor's transactions, like dedupe's: a crash or a
// rebalance neither loses a pending change nor emits one twice. Within a
// transaction, changes are undoable; End(false) undoes them.
type Profiles struct {
	cfg      ProfilesConfig
	topic    string // the state topic, written to
	segments []namedSegment
	now      func() time.Time
	log      *slog.Logger

	parts *partMap[profilePart]

	// Coalesced counts changes taken in; Stale those dropped as stale or
	// duplicate; Expired profiles forgotten after the TTL.
	Coalesced, Stale, Expired atomic.Int64
}

type namedSegment struct {
	name string
	seg  *filter.Segment
}

type profilePart struct {
	profiles map[string]*profile // by state key
	key      []byte              // the state key of the change at hand
	// migrate holds the ids of profiles read under the earlier key (the
	// resource id alone): the next transaction writes them under their
	// state key and deletes the old record.
	migrate map[string]string // old key's id → state key
	// migrated holds what this transaction's records migrated: gone
	// from migrate so a later Records call does not write it again, and
	// put back if the transaction aborts.
	migrated map[string]string
	// undo holds the state before this transaction of each profile it
	// changed (nil: the profile did not exist).
	undo map[string]*profile
	// dirty are the profiles whose state record this transaction writes;
	// gone those deleted (tombstones).
	dirty    map[string]struct{}
	gone     map[string]struct{}
	loadedTo int64
}

// profile is one profile's state, as kept in the state topic.
type profile struct {
	Account  string `json:"a"`
	Resource string `json:"r,omitempty"` // the profile's id; absent in state written before per-account keys
	// Snap is the snapshot, every property's latest value, as one
	// compact JSON object (pending changes are merged into it when they
	// are emitted): a third of the memory of a map of 20 properties.
	Snap    json.RawMessage            `json:"p,omitempty"`
	Pending map[string]json.RawMessage `json:"c,omitempty"` // changed since the last profile.updated
	Changes int                        `json:"n,omitempty"` // changes merged into Pending
	First   int64                      `json:"f,omitempty"` // first and last change timestamps (event time, unix ms)
	Last    int64                      `json:"l,omitempty"`
	Seq     int64                      `json:"s"` // highest sequence applied
	// ChangedAt is when the last change was processed (unix ms): rest and
	// TTL count from it.
	ChangedAt int64 `json:"t"`
	// Unevaluated: changed since segments were last evaluated.
	Unevaluated bool     `json:"u,omitempty"`
	Segments    []string `json:"g,omitempty"` // membership, sorted

	legacy bool // read from a record of the earlier key
	// snapN is how many properties Snap holds, once counted (snapKnown).
	snapN     int
	snapKnown bool
}

// fits refuses a change that would take a profile past the stage's
// bounds: its properties' bytes (snapshot and pending changes, as its
// state record holds them) and their number.
func (p *Profiles) fits(prof *profile, props gjson.Result) error {
	var (
		size    int
		snapN   int
		pending map[string]json.RawMessage
	)
	if prof != nil {
		size, pending = len(prof.Snap), prof.Pending
		for k, v := range pending {
			size += len(k) + len(v) + 4
		}
		if !prof.snapKnown && len(prof.Snap) > 0 {
			prof.snapN = 0
			gjson.ParseBytes(prof.Snap).ForEach(func(_, _ gjson.Result) bool { prof.snapN++; return true })
		}
		prof.snapKnown = true
		snapN = prof.snapN
	}
	count := snapN + len(pending)
	var added []string
	props.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		if old, ok := pending[key]; ok {
			size += len(v.Raw) - len(old)
		} else {
			size += len(key) + len(v.Raw) + 4
			count++
			added = append(added, key)
		}
		return true
	})
	if size > int(p.cfg.MaxBytes) {
		return &schemas.Error{Class: schemas.ClassOversize, Problems: []schemas.Problem{{Field: p.cfg.PropertiesField,
			Msg: fmt.Sprintf("the profile would hold %d bytes of properties, over processor.profiles.max_bytes (%d)", size, p.cfg.MaxBytes)}}}
	}
	if count > p.cfg.MaxProperties && prof != nil && len(prof.Snap) > 0 {
		// The count above takes a changed property that the snapshot
		// has as a new one: near the bound, count exactly.
		inSnap := map[string]bool{}
		gjson.ParseBytes(prof.Snap).ForEach(func(k, _ gjson.Result) bool { inSnap[k.String()] = true; return true })
		count = snapN
		for k := range pending {
			if !inSnap[k] {
				count++
			}
		}
		for _, k := range added {
			if !inSnap[k] {
				count++
			}
		}
	}
	if count > p.cfg.MaxProperties {
		return &schemas.Error{Class: schemas.ClassOversize, Problems: []schemas.Problem{{Field: p.cfg.PropertiesField,
			Msg: fmt.Sprintf("the profile would have %d properties, over processor.profiles.max_properties (%d)", count, p.cfg.MaxProperties)}}}
	}
	return nil
}

func (p *profile) clone() *profile {
	c := *p
	c.Pending = maps.Clone(p.Pending)
	c.Segments = slices.Clone(p.Segments)
	return &c
}

// NewProfiles compiles the stage's segments.
func NewProfiles(cfg ProfilesConfig, stateTopic string, now func() time.Time, log *slog.Logger) (*Profiles, error) {
	cfg.SetBounds()
	p := &Profiles{cfg: cfg, topic: stateTopic, now: now, log: log, parts: newPartMap[profilePart]()}
	for i, s := range cfg.Segments {
		seg, err := filter.CompileSegment(s.Expr)
		if err != nil {
			return nil, fmt.Errorf("processor.profiles.segments[%d].expr: %w", i, err)
		}
		p.segments = append(p.segments, namedSegment{s.Name, seg})
	}
	return p, nil
}

// Name implements Stage.
func (p *Profiles) Name() string { return "profiles" }

func (p *Profiles) isChange(e *schemas.Event) bool {
	match := func(globs []string, v string) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, v); ok {
				return true
			}
		}
		return false
	}
	return match(p.cfg.EventTypes, e.EventType) || (e.ResourceType != "" && match(p.cfg.ResourceTypes, e.ResourceType))
}

// Apply implements Stage: a profile change is merged into its profile's
// state and goes no further; any other event passes.
func (p *Profiles) Apply(rec *kgo.Record, e *schemas.Event) (bool, error) {
	if !p.isChange(e) {
		return true, nil
	}
	raw := e.Extra.Get(p.cfg.PropertiesField)
	props := gjson.ParseBytes(raw)
	if raw == nil || !props.IsObject() {
		return false, &schemas.Error{Class: schemas.ClassInvalid, Problems: []schemas.Problem{{Field: p.cfg.PropertiesField, Msg: "a profile change must hold its changed properties in an object"}}}
	}
	pp := p.part(rec.Partition)
	if pp == nil {
		return false, fmt.Errorf("profile state of partition %d is not loaded", rec.Partition)
	}
	pp.key = appendStateKey(pp.key[:0], e.AccountID, e.ResourceID)
	prof := pp.profiles[string(pp.key)]
	if prof != nil && e.Sequence <= prof.Seq {
		p.Stale.Add(1)
		return false, nil
	}
	if err := p.fits(prof, props); err != nil {
		return false, err
	}
	// The decoded id and values share the record's fetch buffer; state
	// kept for days must not pin it.
	id := string(pp.key)
	pp.touch(id, prof)
	if prof == nil {
		prof = &profile{Account: strings.Clone(e.AccountID), Resource: strings.Clone(e.ResourceID)}
		pp.profiles[id] = prof
	}
	if prof.Pending == nil {
		prof.Pending = map[string]json.RawMessage{}
	}
	props.ForEach(func(k, v gjson.Result) bool {
		key, val := k.String(), json.RawMessage(strings.Clone(v.Raw))
		prof.Pending[key] = val
		return true
	})
	ts := e.Timestamp.UnixMilli()
	if prof.Changes == 0 || ts < prof.First {
		prof.First = ts
	}
	prof.Last = max(prof.Last, ts)
	prof.Changes++
	prof.Seq = e.Sequence
	prof.ChangedAt = p.now().UnixMilli()
	prof.Unevaluated = true
	p.Coalesced.Add(1)
	return false, nil
}

func (p *Profiles) part(partition int32) *profilePart { return p.parts.get(partition) }

// touch records a profile's state before this transaction changes it.
func (pp *profilePart) touch(id string, prev *profile) {
	if _, ok := pp.undo[id]; !ok {
		if prev != nil {
			prev = prev.clone()
		}
		pp.undo[id] = prev
	}
	pp.dirty[id] = struct{}{}
}

// Tick emits what is due at now for one partition: with coalesce, a
// profile.updated for every profile with pending changes; with rest, a
// profile.segments_changed for every profile at rest, not evaluated since
// its last change, whose membership changed. Profiles past the TTL are
// forgotten. The events come sorted by profile id.
func (p *Profiles) Tick(partition int32, now time.Time, coalesce, rest bool) []*schemas.Event {
	pp := p.part(partition)
	if pp == nil {
		return nil
	}
	nowMS := now.UnixMilli()
	var out []*schemas.Event
	for _, id := range slices.Sorted(maps.Keys(pp.profiles)) {
		prof := pp.profiles[id]
		if nowMS-prof.ChangedAt >= p.cfg.TTL.Milliseconds() {
			pp.touch(id, prof)
			delete(pp.profiles, id)
			delete(pp.dirty, id)
			pp.gone[id] = struct{}{}
			p.Expired.Add(1)
			continue
		}
		if coalesce && prof.Changes > 0 {
			pp.touch(id, prof)
			out = append(out, p.updated(prof))
			prof.Snap = mergeSnapshot(prof.Snap, prof.Pending)
			prof.snapKnown = false
			prof.Pending, prof.Changes, prof.First, prof.Last = nil, 0, 0, 0
		}
		if rest && prof.Unevaluated && nowMS-prof.ChangedAt >= p.cfg.RestInterval.Milliseconds() {
			pp.touch(id, prof)
			prof.Unevaluated = false
			if e := p.evaluate(prof, now); e != nil {
				out = append(out, e)
			}
		}
	}
	return out
}

// profileEventID is the id of an event the stage emits about a profile:
// deterministic, so the same emission after a crash has the same id, and
// distinct for two accounts' profiles of one resource id.
func profileEventID(kind string, prof *profile) string {
	return kind + ":" + prof.Account + ":" + prof.Resource + ":" + strconv.FormatInt(prof.Seq, 10)
}

func (p *Profiles) updated(prof *profile) *schemas.Event {
	props, _ := json.Marshal(prof.Pending)
	ts := func(ms int64) json.RawMessage {
		return json.RawMessage(strconv.Quote(time.UnixMilli(ms).UTC().Format(schemas.TimestampLayout)))
	}
	return &schemas.Event{
		EventID:    profileEventID(ProfileUpdated, prof),
		Timestamp:  time.UnixMilli(prof.Last).UTC(),
		AccountID:  prof.Account,
		ResourceID: prof.Resource,
		Sequence:   prof.Seq,
		EventType:  ProfileUpdated,
		Extra: schemas.MakeFields(
			schemas.Field{Name: p.cfg.PropertiesField, JSON: props},
			schemas.Field{Name: "changes", JSON: strconv.AppendInt(nil, int64(prof.Changes), 10)},
			schemas.Field{Name: "first_change_at", JSON: ts(prof.First)},
			schemas.Field{Name: "last_change_at", JSON: ts(prof.Last)},
		),
	}
}

// evaluate sets the profile's membership and returns the event that
// tells of a change, or nil.
func (p *Profiles) evaluate(prof *profile, now time.Time) *schemas.Event {
	env := &filter.SegmentEnv{Properties: map[string]any{}, AccountID: prof.Account, ResourceID: prof.Resource}
	if len(prof.Snap) > 0 {
		_ = json.Unmarshal(prof.Snap, &env.Properties)
	}
	for k, v := range prof.Pending {
		var x any
		if json.Unmarshal(v, &x) == nil {
			env.Properties[k] = x
		}
	}
	var members []string
	for _, s := range p.segments {
		ok, err := s.seg.Match(env)
		if err != nil {
			p.log.Debug("segment expression failed on a profile; not a member", "segment", s.name, "profile", prof.Resource, "err", err)
		}
		if ok {
			members = append(members, s.name)
		}
	}
	slices.Sort(members)
	if slices.Equal(members, prof.Segments) {
		return nil
	}
	var joined, left []string
	for _, m := range members {
		if !slices.Contains(prof.Segments, m) {
			joined = append(joined, m)
		}
	}
	for _, m := range prof.Segments {
		if !slices.Contains(members, m) {
			left = append(left, m)
		}
	}
	prof.Segments = members
	list := func(l []string) json.RawMessage {
		b, _ := json.Marshal(append([]string{}, l...))
		return b
	}
	return &schemas.Event{
		EventID:    profileEventID(ProfileSegmentsChanged, prof),
		Timestamp:  now.UTC(),
		AccountID:  prof.Account,
		ResourceID: prof.Resource,
		Sequence:   prof.Seq,
		EventType:  ProfileSegmentsChanged,
		Extra: schemas.MakeFields(
			schemas.Field{Name: "segments", JSON: list(members)},
			schemas.Field{Name: "joined", JSON: list(joined)},
			schemas.Field{Name: "left", JSON: list(left)},
		),
	}
}

// Records appends the state records of what this transaction changed in
// a partition so far, and starts over: a later call appends only what
// changed since.
func (p *Profiles) Records(partition int32, out []*kgo.Record) []*kgo.Record {
	pp := p.part(partition)
	if pp == nil {
		return out
	}
	for _, old := range slices.Sorted(maps.Keys(pp.migrate)) {
		key := pp.migrate[old]
		if pp.profiles[key] != nil {
			pp.dirty[key] = struct{}{}
		}
		out = append(out, &kgo.Record{Topic: p.topic, Partition: partition, Key: []byte(profileKeyPrefix + old)})
		pp.migrated[old] = key
		delete(pp.migrate, old)
	}
	for _, id := range slices.Sorted(maps.Keys(pp.dirty)) {
		v, err := json.Marshal(pp.profiles[id])
		if err != nil {
			continue // json.RawMessage values were valid when read
		}
		out = append(out, &kgo.Record{Topic: p.topic, Partition: partition, Key: []byte(profileKeyPrefix + id), Value: v})
	}
	for _, id := range slices.Sorted(maps.Keys(pp.gone)) {
		out = append(out, &kgo.Record{Topic: p.topic, Partition: partition, Key: []byte(profileKeyPrefix + id)})
	}
	clear(pp.dirty)
	clear(pp.gone)
	return out
}

// End finishes the transaction: on abort, every profile it changed goes
// back to its state before.
func (p *Profiles) End(committed bool) {
	p.parts.each(func(pp *profilePart) {
		if !committed {
			for id, prev := range pp.undo {
				if prev == nil {
					delete(pp.profiles, id)
				} else {
					pp.profiles[id] = prev
				}
			}
		}
		if !committed {
			maps.Copy(pp.migrate, pp.migrated)
		}
		clear(pp.migrated)
		clear(pp.undo)
		clear(pp.dirty)
		clear(pp.gone)
	})
}

func newProfilePart() *profilePart {
	return &profilePart{profiles: map[string]*profile{}, undo: map[string]*profile{}, dirty: map[string]struct{}{}, gone: map[string]struct{}{}, migrate: map[string]string{}, migrated: map[string]string{}}
}

// loader implements stateStage.
func (p *Profiles) loader(partition int32, fresh bool) stateLoader {
	pp := p.parts.get(partition)
	if fresh || pp == nil {
		pp, fresh = newProfilePart(), true
	}
	return &partLoader[profilePart]{parts: p.parts, partition: partition, fresh: fresh, part: pp, at: &pp.loadedTo,
		apply: p.load,
		loaded: func(pp *profilePart) {
			p.log.Info("profile state loaded", "partition", partition, "profiles", len(pp.profiles), "to_offset", pp.loadedTo)
		}}
}

// load applies one state-topic record to a partition's profiles.
func (p *Profiles) load(pp *profilePart, r *kgo.Record) {
	id, ok := strings.CutPrefix(string(r.Key), profileKeyPrefix)
	if !ok {
		return // dedupe's
	}
	legacy := !strings.HasPrefix(id, stateKeyPrefix)
	if r.Value == nil {
		if legacy {
			// Its migrated copy goes with it, unless written since.
			if key, ok := pp.migrate[id]; ok {
				if prof := pp.profiles[key]; prof != nil && prof.legacy {
					delete(pp.profiles, key)
				}
				delete(pp.migrate, id)
			}
			return
		}
		delete(pp.profiles, id)
		return
	}
	var prof profile
	if err := json.Unmarshal(r.Value, &prof); err != nil {
		p.log.Error("unreadable profile state; the profile starts over", "partition", r.Partition, "offset", r.Offset, "err", err)
		if !legacy {
			delete(pp.profiles, id)
		}
		return
	}
	if legacy {
		// Written before profiles were kept per account: its
		// account is in the value.
		prof.Resource, prof.legacy = id, true
		id = string(appendStateKey(nil, prof.Account, prof.Resource))
		pp.migrate[prof.Resource] = id
	} else if _, resource, ok := splitStateKey(id); ok {
		prof.Resource = resource
	}
	pp.profiles[id] = &prof
}

// Drop forgets partitions that were revoked or lost.
func (p *Profiles) Drop(partitions []int32) { p.parts.drop(partitions) }

// Partitions returns the partitions whose state is held.
func (p *Profiles) Partitions() []int32 { return p.parts.partitions() }

// Count returns how many profiles are held, for metrics.
func (p *Profiles) Count() int {
	n := 0
	p.parts.each(func(pp *profilePart) { n += len(pp.profiles) })
	return n
}

// mergeSnapshot returns the snapshot object with the changes applied:
// changed properties keep their place, new ones follow in key order.
func mergeSnapshot(snap json.RawMessage, changes map[string]json.RawMessage) json.RawMessage {
	out := make([]byte, 0, len(snap)+64*len(changes))
	out = append(out, '{')
	done := make(map[string]bool, len(changes))
	sep := func() {
		if len(out) > 1 {
			out = append(out, ',')
		}
	}
	if len(snap) > 0 {
		gjson.ParseBytes(snap).ForEach(func(k, v gjson.Result) bool {
			sep()
			out = append(out, k.Raw...)
			out = append(out, ':')
			if nv, ok := changes[k.String()]; ok {
				out = append(out, nv...)
				done[k.String()] = true
			} else {
				out = append(out, v.Raw...)
			}
			return true
		})
	}
	for _, k := range slices.Sorted(maps.Keys(changes)) {
		if !done[k] {
			sep()
			out = schemas.AppendString(out, k)
			out = append(out, ':')
			out = append(out, changes[k]...)
		}
	}
	return append(out, '}')
}
