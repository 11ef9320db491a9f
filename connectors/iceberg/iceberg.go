// Package iceberg is the Apache Iceberg destination: each batch becomes a
// Parquet data file in the table's location, and the connector commits
// the files it wrote to the table through its catalog, one snapshot per
// worker per commit interval, with the Kafka offsets each file holds in
// the snapshot's summary.
//
// Exactly once: a batch's offsets are recorded in the group's commits
// before it is delivered (the object destinations' cuts), so whoever
// reads its partition again cuts the same batches. Every snapshot's
// summary names the ranges it added, under
// firehose.<connector>.offsets.<topic>.<partition>; before a commit the
// sink reads the table's snapshots and leaves out every batch a snapshot
// holds already, and the catalog takes the commit only if the table has
// not changed since (optimistic concurrency, retried on conflict). So a
// batch that a crashed or a revoked worker committed, but whose offsets
// Kafka never heard of, is acknowledged without being added twice, and
// two workers delivering the same batch add it once.
package iceberg

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	pqfile "github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"

	"github.com/firehose/firehose/connectors"
)

// Stats are the sink's running totals, safe to read concurrently.
type Stats struct {
	// Commits are snapshots committed; Conflicts commits the catalog
	// refused because another writer committed first (tried again);
	// Failures commit attempts that failed otherwise (the catalog
	// unreachable or refusing), tried again too.
	Commits, Conflicts, Failures atomic.Int64
	// Files and Events are what the commits added; Skipped the batches
	// found in the table already (delivered again after a crash or a
	// revoke) and acknowledged without adding them.
	Files, Events, Skipped atomic.Int64
	// LastCommit is when the last commit succeeded (unix nanos);
	// LastCommitTook how long its catalog round trip took, and
	// LastWait how long its oldest file waited for it (nanos).
	LastCommit, LastCommitTook, LastWait atomic.Int64
	// CommitTime is the catalog round trips of every commit, summed
	// (nanos): over Commits, the mean.
	CommitTime atomic.Int64
	// Pending is the data files written and waiting for a commit.
	Pending atomic.Int64
}

// rng is a batch's place: the offsets of its first and last records.
type rng struct {
	connector, topic string
	partition        int32
	first, last      int64
}

// entry is a data file written and waiting for its commit.
type entry struct {
	r      rng
	file   ice.DataFile
	events int
	since  time.Time
	res    chan error // one answer: nil once committed
}

// Sink writes batches as the data files of one table.
type Sink struct {
	cfg   Config
	parts []Partition
	cat   catalog.Catalog
	ident table.Identifier
	name  string // namespace.table
	log   *slog.Logger
	stats Stats

	// tmu serialises loading, creating and evolving the table.
	tmu sync.Mutex
	// mu guards the rest.
	mu      sync.Mutex
	tbl     *table.Table
	indexed map[int64]bool // snapshots whose summaries are in done
	done    map[rng]bool   // the ranges the table's snapshots hold
	pending []*entry
	eager   time.Time // until then, commit as soon as a file waits
	failing error     // the last commit attempt's error, while failing
	since   time.Time // when it began failing

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	close   sync.Once
}

// New opens the catalog. The table is loaded, or created from the first
// batch's columns, on the first delivery; the catalog's being
// unreachable then holds deliveries instead of failing them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	parts, err := ParsePartitions(cfg.PartitionBy)
	if err != nil {
		return nil, err
	}
	if cfg, err = cfg.resolved(); err != nil {
		return nil, err
	}
	cat, err := openCatalog(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("iceberg destination: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sink{
		cfg: cfg, parts: parts, cat: cat,
		ident:   table.Identifier{cfg.Namespace, cfg.Table},
		name:    cfg.Namespace + "." + cfg.Table,
		log:     log.With("table", cfg.Namespace+"."+cfg.Table),
		indexed: map[int64]bool{}, done: map[rng]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Stats returns the running totals.
func (s *Sink) Stats() *Stats { return &s.stats }

// PathTemplate implements connectors.PathTemplater: batches are cut by
// partition, so that every data file holds one.
func (s *Sink) PathTemplate() string { return pathTemplate(s.parts) }

// Health reports a catalog that has refused or not answered every commit
// attempt for longer than the commit interval: deliveries are held.
func (s *Sink) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing == nil || time.Since(s.since) < s.cfg.CommitInterval {
		return nil
	}
	return fmt.Errorf("iceberg table %s: commits failing since %s (%d data files held): %w",
		s.name, s.since.UTC().Format(time.RFC3339), len(s.pending), s.failing)
}

// Flush implements connectors.Flusher: for the next few seconds, files
// are committed as soon as they are written, because the runtime is
// waiting for them.
func (s *Sink) Flush() {
	s.mu.Lock()
	s.eager = time.Now().Add(10 * time.Second)
	s.mu.Unlock()
	s.wake()
}

func (s *Sink) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Deliver writes the batch's data file and waits for the commit that
// adds it to the table; a batch the table holds already is acknowledged
// at once.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	tbl, err := s.table(ctx, b.Body)
	if err != nil {
		return err
	}
	r := rng{connector: b.Connector, topic: b.Topic, partition: b.Partition, first: b.FirstOffset, last: b.LastOffset}
	s.mu.Lock()
	dup := s.done[r]
	s.mu.Unlock()
	if dup {
		s.stats.Skipped.Add(1)
		return nil
	}
	fsys, err := tbl.FS(ctx)
	if err != nil {
		return connectors.Retryable(fmt.Errorf("iceberg: file IO of %s: %w", tbl.Location(), err), 0)
	}
	wfs, ok := fsys.(iceio.WriteFileIO)
	if !ok {
		return connectors.Permanent(fmt.Errorf("iceberg: %s cannot be written", tbl.Location()), "")
	}
	path := dataPath(tbl.Location(), b.Key)
	if err := wfs.WriteFile(path, b.Body); err != nil {
		return connectors.Retryable(fmt.Errorf("iceberg: write %s: %w", path, err), 0)
	}
	df, err := table.FileToDataFile(ctx, memIO{name: path, body: b.Body}, path, tbl.Schema(), tbl.Spec(), 0, tbl.Properties())
	if err != nil {
		_ = wfs.Remove(path)
		return connectors.Permanent(fmt.Errorf("iceberg: data file %s does not fit table %s: %w", path, s.name, err), "")
	}
	e := &entry{r: r, file: df, events: b.Len(), since: time.Now(), res: make(chan error, 1)}
	s.mu.Lock()
	s.pending = append(s.pending, e)
	eager := time.Now().Before(s.eager)
	s.mu.Unlock()
	s.stats.Pending.Add(1)
	if eager {
		s.wake()
	}
	select {
	case err := <-e.res:
		return err
	case <-ctx.Done():
		// The file may still be committed: whoever delivers the batch
		// again then finds it in the table.
		return ctx.Err()
	}
}

// dataPath is where a batch's data file goes: under data/, the batch's
// key (its partition path and first offset) and a random suffix, so that
// two writers of one batch never overwrite a file a snapshot holds.
func dataPath(location, key string) string {
	var r [6]byte
	_, _ = crand.Read(r[:])
	key = strings.TrimSuffix(key, ".parquet")
	return strings.TrimSuffix(location, "/") + "/data/" + key + "-" + hex.EncodeToString(r[:]) + ".parquet"
}

// MinCommitGap is the least time between two commits of one sink made
// early, because the runtime was waiting for their files (a stop, a
// revoke, or the connector held up by files waiting for their commit).
const MinCommitGap = time.Second

// run commits what waits, every commit interval (or at once when eager),
// until Close.
func (s *Sink) run() {
	defer close(s.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(s.cfg.CommitInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-s.stop:
			s.fail(errors.New("iceberg: the connector stopped before the commit"))
			return
		case <-t.C:
		case <-s.kick:
			// Early, but not more than one commit a MinCommitGap: a
			// backlog read as fast as it comes commits that often, not
			// once a file.
			if wait := MinCommitGap - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-s.stop:
					continue
				}
			}
		}
		s.commitHeld(ctx)
		last = time.Now()
	}
}

// commitHeld commits every waiting file, trying again with backoff until
// a commit succeeds or the sink closes: an unreachable catalog holds
// deliveries, it never fails them.
func (s *Sink) commitHeld(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := s.commit(ctx)
		s.mu.Lock()
		if err == nil {
			s.failing = nil
			s.mu.Unlock()
			return
		}
		if s.failing == nil {
			s.since = time.Now()
		}
		s.failing = err
		s.mu.Unlock()
		if conflict(err) {
			s.stats.Conflicts.Add(1)
			s.log.Info("iceberg commit conflicted with another writer; trying again", "err", err)
		} else {
			s.stats.Failures.Add(1)
			s.log.Warn("iceberg commit failed; holding the batches and trying again", "attempt", attempt+1, "err", err)
		}
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
		}
	}
}

// conflict reports whether a commit failed because the table changed
// since it was read (another writer committed first): the catalog's
// answer, or the client's own check of the commit's requirements.
func conflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(strings.ToLower(err.Error()), "requirement failed")
}

// backoff is full jitter from 100ms to 30s.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 9)
	d = min(d, 30*time.Second)
	return time.Duration(rand.Int64N(int64(d))) + 50*time.Millisecond
}

// commit reloads the table, answers the waiting batches it holds
// already, and commits the others in one snapshot whose summary names
// their ranges.
func (s *Sink) commit(ctx context.Context) error {
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	tbl, err := s.cat.LoadTable(ctx, s.ident)
	if err != nil {
		return fmt.Errorf("load table %s: %w", s.name, err)
	}
	s.mu.Lock()
	s.tbl = tbl
	s.index(tbl)
	var add, dups []*entry
	for _, e := range s.pending[:n] {
		if s.done[e.r] {
			dups = append(dups, e)
		} else {
			add = append(add, e)
		}
	}
	s.mu.Unlock()
	var took time.Duration
	if len(add) > 0 {
		files := make([]ice.DataFile, len(add))
		for i, e := range add {
			files[i] = e.file
		}
		tx := tbl.NewTransaction()
		if err := tx.AddDataFiles(ctx, files, summary(add)); err != nil {
			return fmt.Errorf("add %d data files: %w", len(files), err)
		}
		start := time.Now()
		if _, err := tx.Commit(ctx); err != nil {
			return err
		}
		took = time.Since(start)
	}
	now := time.Now()
	s.mu.Lock()
	s.failing = nil
	s.pending = append([]*entry(nil), s.pending[n:]...)
	oldest := now
	events := 0
	for _, e := range add {
		s.done[e.r] = true
		if e.since.Before(oldest) {
			oldest = e.since
		}
		events += e.events
	}
	s.mu.Unlock()
	// The totals first, then the answers: whoever a delivery returned to
	// reads totals that count it.
	s.stats.Pending.Add(-int64(n))
	s.stats.Skipped.Add(int64(len(dups)))
	if len(add) > 0 {
		s.stats.Commits.Add(1)
		s.stats.Files.Add(int64(len(add)))
		s.stats.Events.Add(int64(events))
		s.stats.LastCommit.Store(now.UnixNano())
		s.stats.LastCommitTook.Store(int64(took))
		s.stats.CommitTime.Add(int64(took))
		s.stats.LastWait.Store(int64(now.Sub(oldest)))
		s.log.Info("iceberg commit", "files", len(add), "events", events, "took", took)
	}
	for _, e := range dups {
		e.res <- nil
	}
	for _, e := range add {
		e.res <- nil
	}
	return nil
}

// fail answers every waiting batch with err.
func (s *Sink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.pending {
		e.res <- err
	}
	s.stats.Pending.Add(-int64(len(s.pending)))
	s.pending = nil
}

// OffsetsKey is the prefix of the summary properties that name the
// ranges a snapshot added: firehose.<connector>.offsets.<topic>.<partition>
// = first-last[,first-last…].
func OffsetsKey(connector, topic string, partition int32) string {
	return "firehose." + connector + ".offsets." + topic + "." + strconv.Itoa(int(partition))
}

// summary is a snapshot's properties for the entries it adds.
func summary(add []*entry) ice.Properties {
	byKey := map[string][]rng{}
	for _, e := range add {
		k := OffsetsKey(e.r.connector, e.r.topic, e.r.partition)
		byKey[k] = append(byKey[k], e.r)
	}
	props := ice.Properties{}
	for k, rs := range byKey {
		sort.Slice(rs, func(i, j int) bool { return rs[i].first < rs[j].first })
		var b []byte
		for i, r := range rs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, r.first, 10)
			b = append(b, '-')
			b = strconv.AppendInt(b, r.last, 10)
		}
		props[k] = string(b)
	}
	return props
}

// ParseOffsets reads a summary property named by OffsetsKey back: the
// connector, topic and partition, and the ranges. ok is false for any
// other property.
func ParseOffsets(key, value string) (connector, topic string, partition int32, ranges [][2]int64, ok bool) {
	rest, found := strings.CutPrefix(key, "firehose.")
	if !found {
		return
	}
	connector, rest, found = strings.Cut(rest, ".offsets.")
	if !found || connector == "" {
		return
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 {
		return
	}
	topic = rest[:dot]
	p, err := strconv.ParseInt(rest[dot+1:], 10, 32)
	if err != nil || p < 0 {
		return
	}
	for r := range strings.SplitSeq(value, ",") {
		a, b, found := strings.Cut(r, "-")
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(b, 10, 64)
		if !found || err1 != nil || err2 != nil || first < 0 || last < first {
			return "", "", 0, nil, false
		}
		ranges = append(ranges, [2]int64{first, last})
	}
	return connector, topic, int32(p), ranges, true
}

// index adds the ranges of the snapshots of tbl not read yet to done.
// Expiring snapshots drops their ranges: keep snapshots at least as long
// as a connector can be behind (see the README).
func (s *Sink) index(tbl *table.Table) {
	for _, snap := range tbl.Metadata().Snapshots() {
		if s.indexed[snap.SnapshotID] || snap.Summary == nil {
			continue
		}
		s.indexed[snap.SnapshotID] = true
		for k, v := range snap.Summary.Properties {
			conn, topic, p, ranges, ok := ParseOffsets(k, v)
			if !ok {
				continue
			}
			for _, r := range ranges {
				s.done[rng{conn, topic, p, r[0], r[1]}] = true
			}
		}
	}
}

// table returns the table, loading it (or creating it from the columns
// of body, a Parquet file) the first time, and adding to it the columns
// of body it does not have. While the catalog does not answer it holds,
// trying again with backoff, until ctx ends.
func (s *Sink) table(ctx context.Context, body []byte) (*table.Table, error) {
	sc, err := bodySchema(body) // outside the lock: deliveries read their footers at once
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("iceberg: read the data file's schema: %w", err), "")
	}
	s.tmu.Lock()
	defer s.tmu.Unlock()
	for attempt := 0; ; attempt++ {
		tbl, err := s.ensure(ctx, sc)
		if err == nil {
			return tbl, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return nil, connectors.Permanent(err, "")
		}
		s.mu.Lock()
		if s.failing == nil {
			s.since = time.Now()
		}
		s.failing = err
		s.mu.Unlock()
		s.stats.Failures.Add(1)
		s.log.Warn("iceberg catalog failed; holding the batch and trying again", "attempt", attempt+1, "err", err)
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type permanentError struct{ error }

func (e *permanentError) Unwrap() error { return e.error }

// ensure loads or creates the table and evolves its schema to sc.
func (s *Sink) ensure(ctx context.Context, sc *ice.Schema) (*table.Table, error) {
	s.mu.Lock()
	tbl := s.tbl
	s.mu.Unlock()
	if tbl == nil {
		var err error
		tbl, err = s.cat.LoadTable(ctx, s.ident)
		if errors.Is(err, catalog.ErrNoSuchTable) {
			tbl, err = s.create(ctx, sc)
		}
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.tbl = tbl
		s.index(tbl)
		s.mu.Unlock()
	}
	missing := missingColumns(tbl.Schema(), sc)
	if len(missing) == 0 {
		return tbl, nil
	}
	// A column the table lacks: add it, optional, never rewriting data.
	tbl, err := s.cat.LoadTable(ctx, s.ident)
	if err != nil {
		return nil, err
	}
	missing = missingColumns(tbl.Schema(), sc)
	if len(missing) > 0 {
		tx := tbl.NewTransaction()
		us := tx.UpdateSchema(true, false)
		for _, f := range missing {
			us.AddColumn([]string{f.Name}, f.Type, f.Doc, false, nil)
		}
		if err := us.Commit(); err != nil {
			return nil, &permanentError{fmt.Errorf("add columns to %s: %w", s.name, err)}
		}
		if tbl, err = tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("add columns to %s: %w", s.name, err)
		}
		names := make([]string, len(missing))
		for i, f := range missing {
			names[i] = f.Name
		}
		s.log.Info("iceberg table schema evolved", "added", names)
	}
	s.mu.Lock()
	s.tbl = tbl
	s.index(tbl)
	s.mu.Unlock()
	return tbl, nil
}

// create creates the namespace, if need be, and the table with sc and
// the partition spec.
func (s *Sink) create(ctx context.Context, sc *ice.Schema) (*table.Table, error) {
	ns := table.Identifier{s.cfg.Namespace}
	if err := s.cat.CreateNamespace(ctx, ns, nil); err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
		return nil, fmt.Errorf("create namespace %s: %w", s.cfg.Namespace, err)
	}
	var opts []ice.PartitionOption
	for _, p := range s.parts {
		f, ok := sc.FindFieldByName(p.Column)
		if !ok {
			return nil, &permanentError{fmt.Errorf("partition_by %s(%s): the data files have no column %s", p.Transform, p.Column, p.Column)}
		}
		tr, err := ice.ParseTransform(p.Transform)
		if err != nil {
			return nil, &permanentError{err}
		}
		opts = append(opts, ice.AddPartitionFieldBySourceID(f.ID, p.Name(), tr, sc, nil))
	}
	spec, err := ice.NewPartitionSpecOpts(opts...)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("partition_by: %w", err)}
	}
	copts := []catalog.CreateTableOpt{catalog.WithPartitionSpec(&spec)}
	if s.cfg.Warehouse != "" {
		copts = append(copts, catalog.WithLocation(strings.TrimSuffix(s.cfg.Warehouse, "/")+"/"+s.cfg.Namespace+".db/"+s.cfg.Table))
	}
	tbl, err := s.cat.CreateTable(ctx, s.ident, sc, copts...)
	if errors.Is(err, catalog.ErrTableAlreadyExists) {
		return s.cat.LoadTable(ctx, s.ident) // another worker created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create table %s: %w", s.name, err)
	}
	s.log.Info("iceberg table created", "location", tbl.Location(), "partition_by", s.cfg.PartitionBy)
	return tbl, nil
}

// bodySchema is the Iceberg schema of a Parquet file's columns. The
// event's JSON columns (metadata, lead_data, extra) come out of Parquet
// as binary with the JSON annotation: they are strings.
func bodySchema(body []byte) (*ice.Schema, error) {
	rdr, err := pqfile.NewParquetReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	as, err := fr.Schema()
	if err != nil {
		return nil, err
	}
	fields := as.Fields()
	for i, f := range fields {
		if f.Type.ID() == arrow.BINARY {
			fields[i].Type = arrow.BinaryTypes.String
		}
	}
	return table.ArrowSchemaToIcebergWithFreshIDs(arrow.NewSchema(fields, nil), false)
}

// missingColumns are the top-level fields of sc the table's schema lacks.
func missingColumns(have, sc *ice.Schema) []ice.NestedField {
	var out []ice.NestedField
	for _, f := range sc.Fields() {
		if _, ok := have.FindFieldByName(f.Name); !ok {
			out = append(out, f)
		}
	}
	return out
}

// Close stops the committer; batches still waiting are answered with an
// error (their files stay unreferenced: see the README). Safe twice.
func (s *Sink) Close(ctx context.Context) error {
	s.close.Do(func() { close(s.stop) })
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c, ok := s.cat.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// memIO serves one file from memory: a data file's footer is read from
// the bytes just written, not fetched back.
type memIO struct {
	name string
	body []byte
}

func (m memIO) Open(name string) (iceio.File, error) {
	if name != m.name {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{Reader: bytes.NewReader(m.body), name: name, size: int64(len(m.body))}, nil
}

func (m memIO) Remove(name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrPermission}
}

type memFile struct {
	*bytes.Reader
	name string
	size int64
}

func (f *memFile) Close() error               { return nil }
func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f.name, f.size}, nil }

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
