// Replay jobs: a bounded range of the events topic delivered again through
// a connector while its live delivery goes on. A job is a consumer group of
// its own, <group>.replay.<id>, whose commits hold where it is and, in their
// metadata, the range it covers; every process that runs the connector
// runs the job's worker in that group, so Kafka shares its partitions out
// and a crash resumes from its commits. Cancelling creates the group
// <group>.replay.<id>.cancelled, which the workers see and stop for.

package connectors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Replay makes a Worker a replay job's: it delivers partition p's records
// from From[p] up to, not including, Until[p], and marks what it delivers
// as the job's.
type Replay struct {
	ID          string
	From, Until map[int32]int64
	// Archive: the range holds events read back from an archive and
	// addressed to the job (ReplayAddress); it delivers only those.
	Archive bool
}

// ReplayAddress is what the firehose.connector header of a record
// addressed to job id of a connector's group says: live workers and other
// jobs skip such records.
func ReplayAddress(group, id string) string { return ReplayGroup(group, id) }

// ReplayHeader is the record header (and, as X-Firehose-Replay, the HTTP
// header) naming the replay job a delivered event came from.
const ReplayHeader = "firehose.replay"

const (
	replayInfix  = ".replay."
	cancelSuffix = ".cancelled"
	failSuffix   = ".failed"
)

// ReplayGroup is the consumer group of job id of a connector's group.
func ReplayGroup(group, id string) string { return group + replayInfix + id }

// NewReplayID returns a new job id: 8 hex digits.
func NewReplayID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var validReplayID = regexp.MustCompile(`^[0-9a-f]{8}$`)

// replayMeta is the part of a job's commit metadata that holds its range.
func replayMeta(from, until int64, archive bool) string {
	m := " from=" + strconv.FormatInt(from, 10) + " until=" + strconv.FormatInt(until, 10)
	if archive {
		m += " archive"
	}
	return m
}

var replayMetaRE = regexp.MustCompile(` from=(\d+) until=(\d+)( archive)?`)

// ReplayPartition is one partition of a job: where it began, where it
// ends and where its commits are.
type ReplayPartition struct {
	Partition             int32
	From, Until, Position int64
}

// ReplayJob is a replay job as its group's commits tell it.
type ReplayJob struct {
	ID, Group  string
	Topic      string
	Partitions []ReplayPartition
	Cancelled  bool
	// Failed is why a worker gave the job up ("" while it has not): its
	// worker stopped on an error (an on_error rule or
	// on_permanent_error: stop), or could not start.
	Failed  string
	Archive bool // events read back from an archive (see Replay)
	Members int  // workers running it now
}

// Total is how many offsets the job covers, and Done how many it has
// delivered (and committed).
func (j ReplayJob) Total() int64 {
	var n int64
	for _, p := range j.Partitions {
		n += p.Until - p.From
	}
	return n
}

// Done is how many of the job's offsets its commits have passed.
func (j ReplayJob) Done() int64 {
	var n int64
	for _, p := range j.Partitions {
		n += min(p.Until, max(p.Position, p.From)) - p.From
	}
	return n
}

// Complete reports whether every partition was delivered to its end.
func (j ReplayJob) Complete() bool {
	for _, p := range j.Partitions {
		if p.Position < p.Until {
			return false
		}
	}
	return true
}

// State is running, complete or cancelled.
func (j ReplayJob) State() string {
	switch {
	case j.Complete():
		return "complete"
	case j.Cancelled:
		return "cancelled"
	case j.Failed != "":
		return "failed"
	}
	return "running"
}

// Replay returns the Replay a worker of the job runs.
func (j ReplayJob) Replay() Replay {
	r := Replay{ID: j.ID, From: map[int32]int64{}, Until: map[int32]int64{}, Archive: j.Archive}
	for _, p := range j.Partitions {
		r.From[p.Partition], r.Until[p.Partition] = p.From, p.Until
	}
	return r
}

// SubmitReplay creates a replay job of the connector's group over topic:
// partition p from from[p] up to until[p]. The job's group has no members
// yet, so its first commits can be made here; the connector's workers
// find it within ReplayPoll and run it.
func SubmitReplay(ctx context.Context, adm *kadm.Client, group, topic string, from, until map[int32]int64) (string, error) {
	id := NewReplayID()
	return id, SubmitReplayOf(ctx, adm, group, topic, id, from, until, false)
}

// SubmitReplayOf creates replay job id; archive says its range holds
// events read back from an archive, addressed to it (ReplayAddress).
func SubmitReplayOf(ctx context.Context, adm *kadm.Client, group, topic, id string, from, until map[int32]int64, archive bool) error {
	var offs kadm.Offsets
	for p, f := range from {
		u, ok := until[p]
		if !ok || u < f {
			return fmt.Errorf("replay: partition %d ends at %d, before it starts (%d)", p, u, f)
		}
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: f, LeaderEpoch: -1,
			Metadata: CommitMetadataPrefix + time.Now().UTC().Format(time.RFC3339Nano) + replayMeta(f, u, archive)})
	}
	if len(offs) == 0 {
		return errors.New("replay: no partitions")
	}
	resp, err := adm.CommitOffsets(ctx, ReplayGroup(group, id), offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("replay: create the job's group %s: %w", ReplayGroup(group, id), err)
	}
	return nil
}

// CancelReplay marks job id of the group cancelled: its workers stop
// within ReplayPoll, keeping what they delivered.
func CancelReplay(ctx context.Context, adm *kadm.Client, group, id string) error {
	jobs, err := ListReplays(ctx, adm, group)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(jobs, func(j ReplayJob) bool { return j.ID == id })
	if i < 0 {
		return fmt.Errorf("replay %s: no such job of group %s", id, group)
	}
	if err := mark(ctx, adm, jobs[i], cancelSuffix, "firehose replay cancelled"); err != nil {
		return fmt.Errorf("replay %s: cancel: %w", id, err)
	}
	return nil
}

// mark commits to the group of j's name with suffix, so that every
// worker and the command following the job see what happened to it;
// metadata says what (cut to Kafka's default 4,096 bytes).
func mark(ctx context.Context, adm *kadm.Client, j ReplayJob, suffix, metadata string) error {
	if len(metadata) > 4000 {
		metadata = metadata[:4000]
	}
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: j.Topic, Partition: j.Partitions[0].Partition, At: 0, LeaderEpoch: -1, Metadata: metadata})
	resp, err := adm.CommitOffsets(ctx, j.Group+suffix, offs)
	if err == nil {
		err = resp.Error()
	}
	return err
}

const failedPrefix = "firehose replay failed: "

// ListReplays returns the replay jobs of a connector's group that Kafka
// still holds (a group's commits expire offsets.retention.minutes, 7 days
// by default, after it empties), by id.
func ListReplays(ctx context.Context, adm *kadm.Client, group string) ([]ReplayJob, error) {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	prefix := group + replayInfix
	var groups []string
	cancelled, failed := map[string]bool{}, map[string]string{}
	for _, g := range listed.Groups() {
		id, ok := strings.CutPrefix(g, prefix)
		if !ok {
			continue
		}
		if id, ok := strings.CutSuffix(id, cancelSuffix); ok {
			cancelled[id] = true
			continue
		}
		if id, ok := strings.CutSuffix(id, failSuffix); ok {
			failed[id] = "(reason unreadable)"
			if offs, err := adm.FetchOffsets(ctx, g); err == nil {
				offs.Each(func(o kadm.OffsetResponse) {
					if why, ok := strings.CutPrefix(o.Metadata, failedPrefix); ok {
						failed[id] = strings.TrimSuffix(why, `"`)
					}
				})
			}
			continue
		}
		if validReplayID.MatchString(id) {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return nil, nil
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("describe replay groups: %w", err)
	}
	var jobs []ReplayJob
	for _, g := range groups {
		offs, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("fetch the commits of %s: %w", g, err)
		}
		j := ReplayJob{ID: strings.TrimPrefix(g, prefix), Group: g, Members: len(described[g].Members)}
		j.Cancelled, j.Failed = cancelled[j.ID], failed[j.ID]
		offs.Each(func(o kadm.OffsetResponse) {
			m := replayMetaRE.FindStringSubmatch(o.Metadata)
			if o.Err != nil || m == nil {
				return
			}
			f, _ := strconv.ParseInt(m[1], 10, 64)
			u, _ := strconv.ParseInt(m[2], 10, 64)
			j.Topic, j.Archive = o.Topic, m[3] != ""
			j.Partitions = append(j.Partitions, ReplayPartition{Partition: o.Partition, From: f, Until: u, Position: o.At})
		})
		if len(j.Partitions) == 0 {
			continue // not a job's commits
		}
		slices.SortFunc(j.Partitions, func(a, b ReplayPartition) int { return int(a.Partition - b.Partition) })
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b ReplayJob) int { return strings.Compare(a.ID, b.ID) })
	return jobs, nil
}

// ReplayPoll is how often a connector's workers look for replay jobs.
var ReplayPoll = 5 * time.Second

// Replayer runs the replay jobs of one connector beside its live worker,
// in the same process: it looks for jobs every ReplayPoll and runs each
// one's worker until the job is complete or cancelled, or ctx ends.
type Replayer struct {
	o     Options
	adm   *kadm.Client
	limit *limiter // the live worker's rate limits, shared; nil: its own
}

// Replays returns the Replayer of w's connector, whose jobs share w's rate
// limits; kafka are the client options for the jobs (the live worker's,
// without hooks that register one client's metrics).
func (w *Worker) Replays(kafka []kgo.Opt) (*Replayer, error) {
	o := w.o
	o.Kafka = kafka
	r, err := NewReplayer(o)
	if err != nil {
		return nil, err
	}
	r.limit = w.limit
	return r, nil
}

// NewReplayer returns the Replayer of the connector o configures (the
// live worker's options: a job's worker takes its settings, with its own
// group, a quarter of max_in_flight and half of max_buffered_bytes).
func NewReplayer(o Options) (*Replayer, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Connector.Defaults()
	cl, err := kgo.NewClient(o.Kafka...)
	if err != nil {
		return nil, err
	}
	return &Replayer{o: o, adm: kadm.NewClient(cl)}, nil
}

// Run runs jobs until ctx ends, and returns once their workers stopped.
func (r *Replayer) Run(ctx context.Context) error {
	defer r.adm.Close()
	log := r.o.Log.With("connector", r.o.Connector.Name)
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	jobs := map[string]*running{}
	var wg sync.WaitGroup
	defer func() {
		for _, j := range jobs {
			j.cancel()
		}
		wg.Wait()
	}()
	t := time.NewTicker(ReplayPoll)
	defer t.Stop()
	for {
		listed, err := ListReplays(ctx, r.adm, r.o.Connector.Group)
		if err != nil && ctx.Err() == nil {
			log.Warn("replay jobs could not be listed; trying again", "err", err)
		}
		seen := map[string]bool{}
		for _, j := range listed {
			seen[j.ID] = true
			run := jobs[j.ID]
			if run != nil {
				select {
				case <-run.done:
					delete(jobs, j.ID) // ended on its own; started again below if need be
					run = nil
				default:
				}
			}
			switch {
			case run != nil && (j.Complete() || j.Cancelled || j.Failed != ""):
				log.Info("replay job "+j.State(), "job", j.ID, "events", j.Done())
				run.cancel()
				delete(jobs, j.ID)
			case run == nil && j.State() == "running":
				w, err := r.worker(j)
				if err != nil {
					log.Error("replay job cannot run", "job", j.ID, "err", err)
					r.fail(ctx, j, err)
					continue
				}
				jctx, cancel := context.WithCancel(ctx)
				run = &running{cancel: cancel, done: make(chan struct{})}
				jobs[j.ID] = run
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer close(run.done)
					if err := w.Run(jctx); err != nil && jctx.Err() == nil {
						log.Error("replay job stopped", "job", j.ID, "err", err)
						r.fail(ctx, j, err)
					}
				}()
				log.Info("replay job running", "job", j.ID, "group", j.Group, "events", j.Total())
			}
		}
		for id, run := range jobs {
			if !seen[id] && err == nil {
				run.cancel() // its group was deleted
				delete(jobs, id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fail marks job j failed with err, for every worker and the command.
func (r *Replayer) fail(ctx context.Context, j ReplayJob, err error) {
	if merr := mark(ctx, r.adm, j, failSuffix, failedPrefix+err.Error()+`"`); merr != nil && ctx.Err() == nil {
		r.o.Log.Warn("a failed replay job could not be marked failed", "job", j.ID, "err", merr)
	}
}

// worker builds the worker of job j.
func (r *Replayer) worker(j ReplayJob) (*Worker, error) {
	o := r.o
	o.Connector.Group = j.Group
	if o.Connector.MaxInFlight == InFlightAuto {
		o.Connector.MaxInFlightLimit = max(1, o.Connector.MaxInFlightLimit/4)
	} else {
		o.Connector.MaxInFlight = max(1, o.Connector.MaxInFlight/4)
	}
	o.Connector.MaxBufferedBytes = max(1<<20, o.Connector.MaxBufferedBytes/2)
	o.Observer, o.Beat = nil, nil
	rp := j.Replay()
	o.Replay = &rp
	o.Kafka = append(slices.Clip(o.Kafka), kgo.KeepControlRecords())
	w, err := New(o)
	if err != nil {
		return nil, err
	}
	if r.limit != nil {
		w.limit = r.limit
	}
	return w, nil
}
