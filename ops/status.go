package ops

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
)

// Worker names one consumer group to report on.
type Worker struct {
	Name  string // "processor" or the connector's name
	Kind  string // processor or connector
	Group string
	Topic string
	Stage string // its stage in DLQ headers
}

// PartitionStatus is one partition of a group.
type PartitionStatus struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed"` // -1: nothing committed
	End       int64 `json:"end"`
	// Lag is the events waiting: records between Committed and End,
	// transaction markers and aborted records not counted, for a span of
	// up to MaxCountedLag offsets; beyond that, End minus Committed.
	Lag int64 `json:"lag"`
	// OldestWaitingSeconds is the age of the first event not yet
	// committed (by its Kafka timestamp); 0 when nothing waits.
	OldestWaitingSeconds float64 `json:"oldest_waiting_seconds"`
	start                int64   // the partition's log start offset
}

// GroupStatus is what status reports for one worker.
type GroupStatus struct {
	Name                 string   `json:"name"`
	Kind                 string   `json:"kind"`
	Group                string   `json:"group"`
	Topic                string   `json:"topic"`
	State                string   `json:"state"`
	Members              []string `json:"members"`
	Lag                  int64    `json:"lag"`
	EventsPerSecond      float64  `json:"events_per_second"`
	OldestWaitingSeconds float64  `json:"oldest_waiting_seconds"`
	DeadLettersLastHour  int      `json:"dead_letters_last_hour"`
	// ErrorRate is the last hour's dead letters over the events the worker
	// committed in that hour plus those dead letters. Committed events are
	// counted by offsets, which on a transactional topic (events) include
	// transaction markers: the rate there reads a little low.
	ErrorRate float64 `json:"error_rate"`
	// LastDelivery is when a connector last committed after a delivery
	// (zero if never); empty for the processor.
	LastDelivery *time.Time        `json:"last_delivery,omitempty"`
	Partitions   []PartitionStatus `json:"partitions"`
	// Replays are a connector's replay jobs that Kafka still holds.
	Replays []ReplayStatus `json:"replays,omitempty"`
	// Table is an Iceberg connector's table, as its catalog has it.
	Table *TableStatus `json:"table,omitempty"`
}

// TableStatus is an Iceberg connector's table: its current snapshot and,
// from the snapshots' summaries, where each partition of the connector's
// topic would resume.
type TableStatus struct {
	Table      string     `json:"table"`
	Location   string     `json:"location,omitempty"`
	Snapshot   int64      `json:"snapshot,omitempty"`
	LastCommit *time.Time `json:"last_commit,omitempty"`
	Records    int64      `json:"records"`
	Files      int64      `json:"files"`
	// Next is, per partition, the offset after the last range the
	// connector committed to the table.
	Next map[int32]int64 `json:"next_offsets,omitempty"`
	// Error is why the catalog could not be read: the connector's
	// deliveries are held while it lasts.
	Error string `json:"error,omitempty"`
}

// ReplayStatus is one replay job of a connector.
type ReplayStatus struct {
	ID      string `json:"id"`
	State   string `json:"state"` // running, complete or cancelled
	Done    int64  `json:"done"`  // offsets delivered, of Total
	Total   int64  `json:"total"`
	Workers int    `json:"workers"`
}

// Status measures each worker's lag twice, interval apart, for its rate of
// commits; reads the first waiting record of each lagging partition for
// its age; and counts the last hour's dead letters by stage.
func Status(ctx context.Context, kopts []kgo.Opt, dlqTopic string, workers []Worker, interval time.Duration) ([]GroupStatus, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups := make([]string, len(workers))
	for i, w := range workers {
		groups[i] = w.Group
	}
	first, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("read lag: %w", err)
	}
	start := time.Now()
	select {
	case <-time.After(interval):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	second, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("read lag: %w", err)
	}
	elapsed := time.Since(start).Seconds()

	topics := map[string]bool{}
	for _, w := range workers {
		topics[w.Topic] = true
	}
	hourAgo, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-time.Hour).UnixMilli(), slices.Collect(maps.Keys(topics))...)
	if err != nil {
		return nil, fmt.Errorf("list offsets an hour ago: %w", err)
	}

	dead := map[string]int{}
	if dls, err := ReadDLQ(ctx, kopts, dlqTopic, DLQFilter{Since: time.Now().Add(-time.Hour)}); err == nil {
		for _, d := range dls {
			dead[d.Stage]++
		}
	}

	var out []GroupStatus
	waiting := map[string]map[int32]*span{}
	for _, w := range workers {
		l := second[w.Group]
		gs := GroupStatus{Name: w.Name, Kind: w.Kind, Group: w.Group, Topic: w.Topic, State: l.State, DeadLettersLastHour: dead[w.Stage], Members: []string{}}
		for _, m := range l.Members {
			gs.Members = append(gs.Members, m.ClientHost)
		}
		before := first[w.Group].Lag
		var lastHour int64
		for p, m := range l.Lag[w.Topic] {
			ps := PartitionStatus{Partition: p, Committed: m.Commit.At, End: m.End.Offset, Lag: max(m.Lag, 0)}
			if m.Commit.At < 0 {
				ps.Lag = max(m.End.Offset-m.Start.Offset, 0)
			}
			if b, ok := before[w.Topic][p]; ok && b.Commit.At >= 0 && m.Commit.At > b.Commit.At {
				gs.EventsPerSecond += float64(m.Commit.At-b.Commit.At) / elapsed
			}
			if h, ok := hourAgo.Lookup(w.Topic, p); ok && h.Err == nil && h.Offset >= 0 && m.Commit.At > h.Offset {
				lastHour += m.Commit.At - h.Offset
			}
			if t, ok := strings.CutPrefix(m.Commit.Metadata, connectors.CommitMetadataPrefix); ok {
				t, _, _ = strings.Cut(t, " ") // the cuts follow
				if at, err := time.Parse(time.RFC3339Nano, t); err == nil && (gs.LastDelivery == nil || at.After(*gs.LastDelivery)) {
					gs.LastDelivery = &at
				}
			}
			if ps.Lag > 0 {
				if waiting[w.Topic] == nil {
					waiting[w.Topic] = map[int32]*span{}
				}
				sp := waiting[w.Topic][p]
				if sp == nil {
					sp = &span{from: ps.waitingFrom(m.Start.Offset), end: m.End.Offset}
					waiting[w.Topic][p] = sp
				}
				sp.from, sp.end = min(sp.from, ps.waitingFrom(m.Start.Offset)), max(sp.end, m.End.Offset)
				ps.start = m.Start.Offset
			}
			gs.Partitions = append(gs.Partitions, ps)
		}
		if n := int64(gs.DeadLettersLastHour); n > 0 {
			gs.ErrorRate = float64(n) / float64(n+lastHour)
		}
		if gs.State == "" {
			gs.State = "unknown"
		}
		slices.SortFunc(gs.Partitions, func(a, b PartitionStatus) int { return int(a.Partition - b.Partition) })
		out = append(out, gs)
	}
	scans := readWaiting(ctx, kopts, waiting)
	for i := range out {
		for j := range out[i].Partitions {
			p := &out[i].Partitions[j]
			if sc := scans[out[i].Topic][p.Partition]; p.Lag > 0 && sc != nil {
				from := p.waitingFrom(p.start)
				k, _ := slices.BinarySearchFunc(sc.records, from, func(r waitingRecord, o int64) int { return cmp.Compare(r.offset, o) })
				if k < len(sc.records) {
					p.OldestWaitingSeconds = time.Since(sc.records[k].at).Seconds()
					out[i].OldestWaitingSeconds = max(out[i].OldestWaitingSeconds, p.OldestWaitingSeconds)
				}
				if sc.complete {
					p.Lag = int64(len(sc.records) - k)
				}
			}
			out[i].Lag += p.Lag
		}
		if out[i].Kind == "connector" {
			jobs, err := connectors.ListReplays(ctx, adm, out[i].Group)
			if err != nil {
				return nil, err
			}
			for _, j := range jobs {
				out[i].Replays = append(out[i].Replays, ReplayStatus{ID: j.ID, State: j.State(), Done: j.Done(), Total: j.Total(), Workers: j.Members})
			}
		}
	}
	return out, nil
}

// waitingFrom is the first offset of the partition not yet committed.
func (p PartitionStatus) waitingFrom(start int64) int64 {
	if p.Committed < 0 {
		return start
	}
	return p.Committed
}

// span is the offsets of one partition some group has not committed.
type span struct{ from, end int64 }

// waitingRecord is one data record waiting in a partition.
type waitingRecord struct {
	offset int64
	at     time.Time
}

// partitionScan is what readWaiting found in one partition's span: its data
// records in offset order, and whether that is all of them (else only a
// prefix was read).
type partitionScan struct {
	records  []waitingRecord
	complete bool
}

// MaxCountedLag is the largest span of offsets status reads to count a
// partition's lag in records. Offsets also number transaction markers (one
// after each transaction on the events topic) and aborted records, so a
// group that has read everything sits an offset or more behind the end; a
// short span is read and its records counted, a longer one is reported as
// the offset difference.
const MaxCountedLag = 10000

// readWaiting reads each span with read_committed, transaction markers
// included, until its end or for at most two seconds in all: every data
// record of spans up to MaxCountedLag offsets, and the first one of longer
// spans (for its age).
func readWaiting(ctx context.Context, kopts []kgo.Opt, spans map[string]map[int32]*span) map[string]map[int32]*partitionScan {
	out := map[string]map[int32]*partitionScan{}
	at := map[string]map[int32]kgo.Offset{}
	left := 0
	for topic, ps := range spans {
		out[topic] = map[int32]*partitionScan{}
		at[topic] = map[int32]kgo.Offset{}
		for p, sp := range ps {
			out[topic][p] = &partitionScan{}
			at[topic][p] = kgo.NewOffset().At(sp.from)
			left++
		}
	}
	if left == 0 {
		return out
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), kopts...), kgo.ConsumePartitions(at),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return out
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			sc, sp := out[p.Topic][p.Partition], spans[p.Topic][p.Partition]
			if sc == nil || sc.complete {
				return
			}
			counting := sp.end-sp.from <= MaxCountedLag
			for _, r := range p.Records {
				if r.Offset >= sp.end {
					break
				}
				if !r.Attrs.IsControl() && (counting || len(sc.records) == 0) {
					sc.records = append(sc.records, waitingRecord{r.Offset, r.Timestamp})
				}
			}
			n := len(p.Records)
			reachedEnd := n > 0 && p.Records[n-1].Offset >= sp.end-1
			sc.complete = counting && reachedEnd
			if sc.complete || !counting && len(sc.records) > 0 {
				left--
				cl.PauseFetchPartitions(map[string][]int32{p.Topic: {p.Partition}})
			}
		})
	}
	return out
}

// PrintStatus writes the report for people.
func PrintStatus(w io.Writer, st []GroupStatus) {
	for _, g := range st {
		fmt.Fprintf(w, "%s %s  (group %s, topic %s)  %s, %d worker(s)\n", g.Kind, g.Name, g.Group, g.Topic, g.State, len(g.Members))
		age := "-"
		if g.OldestWaitingSeconds > 0 {
			age = (time.Duration(g.OldestWaitingSeconds) * time.Second).String()
		}
		last := ""
		if g.LastDelivery != nil {
			last = fmt.Sprintf("   last delivery %s ago", time.Since(*g.LastDelivery).Round(time.Second))
		}
		fmt.Fprintf(w, "  lag %d   %.1f events/s   oldest waiting %s%s\n", g.Lag, g.EventsPerSecond, age, last)
		fmt.Fprintf(w, "  dead letters last hour %d (error rate %.2f%%)\n", g.DeadLettersLastHour, 100*g.ErrorRate)
		var parts []string
		for _, p := range g.Partitions {
			parts = append(parts, fmt.Sprintf("%d:%d", p.Partition, p.Lag))
		}
		fmt.Fprintf(w, "  lag by partition  %s\n", strings.Join(parts, " "))
		for _, r := range g.Replays {
			fmt.Fprintf(w, "  replay job %s  %s  %d/%d events  %d worker(s)\n", r.ID, r.State, r.Done, r.Total, r.Workers)
		}
		if t := g.Table; t != nil {
			printTable(w, t)
		}
		fmt.Fprintln(w)
	}
}

func printTable(w io.Writer, t *TableStatus) {
	switch {
	case t.Error != "":
		fmt.Fprintf(w, "  iceberg table %s  catalog error: %s\n", t.Table, t.Error)
		return
	case t.LastCommit == nil:
		fmt.Fprintf(w, "  iceberg table %s  no snapshot yet\n", t.Table)
		return
	}
	fmt.Fprintf(w, "  iceberg table %s  snapshot %d committed %s ago  %d records in %d files\n",
		t.Table, t.Snapshot, time.Since(*t.LastCommit).Round(time.Second), t.Records, t.Files)
	if len(t.Next) > 0 {
		parts := make([]int32, 0, len(t.Next))
		for p := range t.Next {
			parts = append(parts, p)
		}
		slices.Sort(parts)
		var s []string
		for _, p := range parts {
			s = append(s, fmt.Sprintf("%d:%d", p, t.Next[p]))
		}
		fmt.Fprintf(w, "  table holds offsets up to  %s\n", strings.Join(s, " "))
	}
}
