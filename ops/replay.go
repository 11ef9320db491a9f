// Package ops holds what operators run against a live deployment: replay
// plans (a replay job's range, or a reset of a connector's committed
// offsets), status, and the DLQ tools. Everything goes through Kafka's
// admin API; the connectors' workers run the replay jobs (see
// connectors.SubmitReplay), and must be stopped for a reset.
package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ReplayFrom says where a replay starts. Exactly one field is set.
type ReplayFrom struct {
	Time     time.Time       // the first event at or after this time
	Offsets  map[int32]int64 // explicit offsets; other partitions keep theirs
	Earliest bool            // the oldest retained event
	Latest   bool            // skip everything now in the topic
}

// ParseOffsets reads "0:120,3:4000".
func ParseOffsets(s string) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, part := range strings.Split(s, ",") {
		p, o, ok := strings.Cut(strings.TrimSpace(part), ":")
		pi, perr := strconv.ParseInt(p, 10, 32)
		oi, oerr := strconv.ParseInt(o, 10, 64)
		if !ok || perr != nil || oerr != nil || pi < 0 || oi < 0 {
			return nil, fmt.Errorf("--offsets: %q is not partition:offset (e.g. 0:120,3:4000)", part)
		}
		if _, dup := out[int32(pi)]; dup {
			return nil, fmt.Errorf("--offsets: partition %d given twice", pi)
		}
		out[int32(pi)] = oi
	}
	return out, nil
}

// ReplayRow is one partition of a replay plan.
type ReplayRow struct {
	Partition int32
	Committed int64 // -1: nothing committed yet
	Target    int64
	Start     int64 // log start offset
	End       int64 // high watermark
}

// Redeliver is how many events the change delivers again (negative: skips).
func (r ReplayRow) Redeliver() int64 {
	c := r.Committed
	if c < 0 {
		c = r.Start
	}
	return c - r.Target
}

// ReplayPlan is what a replay will do.
type ReplayPlan struct {
	Group, Topic string
	Rows         []ReplayRow
	Members      []string // running workers of the group; a replay needs none
}

// PlanReplay computes the offsets a replay commits, without changing
// anything.
func PlanReplay(ctx context.Context, adm *kadm.Client, group, topic string, from ReplayFrom) (*ReplayPlan, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	var target kadm.ListedOffsets
	if !from.Time.IsZero() {
		if target, err = adm.ListOffsetsAfterMilli(ctx, from.Time.UnixMilli(), topic); err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", from.Time.Format(time.RFC3339), err)
		}
	}
	plan := &ReplayPlan{Group: group, Topic: topic}
	for p, s := range starts[topic] {
		e, _ := ends.Lookup(topic, p)
		row := ReplayRow{Partition: p, Committed: -1, Start: s.Offset, End: e.Offset}
		if c, ok := committed.Lookup(topic, p); ok {
			row.Committed = c.At
		}
		switch {
		case from.Earliest:
			row.Target = row.Start
		case from.Latest:
			row.Target = row.End
		case from.Offsets != nil:
			o, ok := from.Offsets[p]
			if !ok {
				row.Target = row.Committed
				if row.Target < 0 {
					row.Target = row.Start
				}
				break
			}
			if o < row.Start || o > row.End {
				return nil, fmt.Errorf("--offsets: partition %d offset %d is outside what the topic holds (%d to %d)", p, o, row.Start, row.End)
			}
			row.Target = o
		default:
			t, ok := target.Lookup(topic, p)
			if !ok || t.Err != nil || t.Offset < 0 {
				row.Target = row.End // nothing at or after that time
			} else {
				row.Target = t.Offset
			}
		}
		plan.Rows = append(plan.Rows, row)
	}
	for p := range from.Offsets {
		if _, ok := starts.Lookup(topic, p); !ok {
			return nil, fmt.Errorf("--offsets: topic %s has no partition %d", topic, p)
		}
	}
	slices.SortFunc(plan.Rows, func(a, b ReplayRow) int { return int(a.Partition - b.Partition) })
	groups, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	for _, m := range groups[group].Members {
		plan.Members = append(plan.Members, m.ClientHost+" ("+m.ClientID+")")
	}
	return plan, nil
}

// Print writes the plan as a table.
func (p *ReplayPlan) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "partition\tcommitted\ttarget\tre-deliver\t\n")
	var total int64
	for _, r := range p.Rows {
		c := strconv.FormatInt(r.Committed, 10)
		if r.Committed < 0 {
			c = "none"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t\n", r.Partition, c, r.Target, r.Redeliver())
		total += r.Redeliver()
	}
	tw.Flush()
	if total >= 0 {
		fmt.Fprintf(w, "%d events will be delivered again\n", total)
	} else {
		fmt.Fprintf(w, "%d events will be skipped\n", -total)
	}
}

// ErrGroupActive is returned by Apply while workers run.
var ErrGroupActive = errors.New("the connector's consumer group has running members")

// Apply commits the plan's targets. Kafka only lets a group's offsets
// change while it has no members, so it refuses while workers run.
func (p *ReplayPlan) Apply(ctx context.Context, adm *kadm.Client) error {
	if len(p.Members) > 0 {
		return fmt.Errorf("%w: %s. Stop them (every `firehose run` with this connector), run the replay again, then start them", ErrGroupActive, strings.Join(p.Members, ", "))
	}
	var offs kadm.Offsets
	for _, r := range p.Rows {
		offs.AddOffset(p.Topic, r.Partition, r.Target, -1)
	}
	resp, err := adm.CommitOffsets(ctx, p.Group, offs)
	if err != nil {
		return fmt.Errorf("commit offsets for group %s: %w", p.Group, err)
	}
	var first error
	resp.EachError(func(o kadm.OffsetResponse) {
		if first == nil {
			first = fmt.Errorf("commit offset of partition %d for group %s: %w", o.Partition, p.Group, o.Err)
		}
	})
	return first
}

// ParseRanges reads "0:120,3:4000-4500": per partition, where a replay job
// starts and, after a dash, where it ends (not included); -1 when no end
// is given.
func ParseRanges(s string) (map[int32][2]int64, error) {
	out := map[int32][2]int64{}
	for _, part := range strings.Split(s, ",") {
		p, o, ok := strings.Cut(strings.TrimSpace(part), ":")
		from, to, ranged := strings.Cut(o, "-")
		pi, perr := strconv.ParseInt(p, 10, 32)
		fi, ferr := strconv.ParseInt(from, 10, 64)
		ti, terr := int64(-1), error(nil)
		if ranged {
			ti, terr = strconv.ParseInt(to, 10, 64)
		}
		if !ok || perr != nil || ferr != nil || terr != nil || pi < 0 || fi < 0 || ranged && ti < fi {
			return nil, fmt.Errorf("--offsets: %q is not partition:offset or partition:from-to (e.g. 0:120,3:4000-4500)", part)
		}
		if _, dup := out[int32(pi)]; dup {
			return nil, fmt.Errorf("--offsets: partition %d given twice", pi)
		}
		out[int32(pi)] = [2]int64{fi, ti}
	}
	return out, nil
}

// JobRow is one partition of a replay job's plan: offsets From up to, not
// including, Until.
type JobRow struct {
	Partition   int32
	From, Until int64
}

// JobPlan is the range a replay job will deliver again.
type JobPlan struct {
	Topic string
	Rows  []JobRow
}

// Total is how many offsets the plan covers.
func (p *JobPlan) Total() int64 {
	var n int64
	for _, r := range p.Rows {
		n += r.Until - r.From
	}
	return n
}

// PlanJob computes a replay job's range over topic: from a time (the
// first event at or after it), from offsets (ranges: only the partitions
// named, each to its given end or the end now), or everything the topic
// holds; each partition ends at the first event at or after to, when it is
// set, else at its end now. Partitions with nothing in range are left out.
func PlanJob(ctx context.Context, adm *kadm.Client, topic string, from ReplayFrom, ranges map[int32][2]int64, to time.Time) (*JobPlan, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	after := func(t time.Time) (kadm.ListedOffsets, error) {
		if t.IsZero() {
			return nil, nil
		}
		l, err := adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
		if err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", t.Format(time.RFC3339), err)
		}
		return l, nil
	}
	fromAt, err := after(from.Time)
	if err != nil {
		return nil, err
	}
	toAt, err := after(to)
	if err != nil {
		return nil, err
	}
	at := func(l kadm.ListedOffsets, p int32, end int64) int64 {
		o, ok := l.Lookup(topic, p)
		if !ok || o.Err != nil || o.Offset < 0 || o.Offset > end {
			return end // nothing at or after that time
		}
		return o.Offset
	}
	for p := range ranges {
		if _, ok := starts.Lookup(topic, p); !ok {
			return nil, fmt.Errorf("--offsets: topic %s has no partition %d", topic, p)
		}
	}
	plan := &JobPlan{Topic: topic}
	for p, s := range starts[topic] {
		e, _ := ends.Lookup(topic, p)
		end := e.Offset
		if toAt != nil {
			end = at(toAt, p, end)
		}
		row := JobRow{Partition: p, From: s.Offset, Until: end}
		switch {
		case from.Earliest:
		case ranges != nil:
			r, ok := ranges[p]
			if !ok {
				continue
			}
			if r[0] < s.Offset || r[0] > e.Offset || r[1] > e.Offset {
				return nil, fmt.Errorf("--offsets: partition %d range %d-%d is outside what the topic holds (%d to %d)", p, r[0], r[1], s.Offset, e.Offset)
			}
			row.From = r[0]
			if r[1] >= 0 {
				row.Until = r[1]
			}
		default:
			row.From = at(fromAt, p, e.Offset)
		}
		if row.From < row.Until {
			plan.Rows = append(plan.Rows, row)
		}
	}
	slices.SortFunc(plan.Rows, func(a, b JobRow) int { return int(a.Partition - b.Partition) })
	return plan, nil
}

// Print writes the plan as a table.
func (p *JobPlan) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "partition\tfrom\tuntil\tevents\t\n")
	for _, r := range p.Rows {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t\n", r.Partition, r.From, r.Until, r.Until-r.From)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d events will be delivered again (offsets: transaction markers count too)\n", p.Total())
}
