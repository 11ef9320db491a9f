package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/archive"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/ops"
)

func newReplayCmd(g *globals) *cobra.Command {
	var (
		path, connector, from, to, offsets string
		fromArchive                        string
		earliest, latest, dryRun, reset    bool
		detach                             bool
	)
	cmd := &cobra.Command{
		Use:   "replay -c FILE --connector NAME (--from TIME [--to TIME] | --offsets P:O[-O],… | --earliest) [--detach] [--dry-run] [--reset]",
		Short: "Deliver a range of a connector's events again, beside its live delivery",
		Long: `replay submits a replay job: the connector's running workers deliver the
range again, in a consumer group of the job's own (<group>.replay.<id>),
while live delivery goes on. Objects and files of the job are named
…+<first offset>.replay-<id>.<extension>, each event's firehose_metadata has
"replay": "<id>", webhook batches carry X-Firehose-Replay and record
destinations the firehose.replay header. The job survives worker crashes and
rebalances (its own commits) and this command's exit.

The command prints the plan, then follows the job: a progress bar on a
terminal, a line every few seconds otherwise; it exits 0 once the job is
complete and 1 if it is cancelled or fails (a worker of it stopped on an
error, which it prints). --detach returns at once with the job's id.
firehose replay list shows the jobs, firehose replay cancel ID stops one,
firehose status shows them beside their connector.

--from takes RFC 3339 (2024-01-15T14:00:00Z): per partition, the first event
that reached the events topic at or after that time; --to ends the range the
same way (default: the end of each partition when the command runs).
--offsets names partitions and where to start, and optionally where to stop
(not included): 0:1200,3:4000-4500. --earliest replays all the topic holds.

--reset instead moves the connector's own committed offsets (the connector
itself rewinds, or with --latest skips what is waiting). Kafka allows that
only while the group has no members, so --reset refuses while any worker runs
the connector, and names them.`,
		Example: `  firehose replay -c firehose.yaml --connector s3-archive --from 2024-01-15T14:00:00Z --to 2024-01-15T15:00:00Z
  firehose replay -c firehose.yaml --connector webhook --offsets 0:1200-1300,3:4000 --detach
  firehose replay list -c firehose.yaml
  firehose replay -c firehose.yaml --connector s3-archive --from 2024-01-15T14:00:00Z --reset --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var spec ops.ReplayFrom
			n := 0
			if from != "" {
				t, err := time.Parse(time.RFC3339Nano, from)
				if err != nil {
					return fmt.Errorf("--from must be RFC 3339, e.g. 2024-01-15T14:00:00Z: %w", err)
				}
				spec.Time = t
				n++
			}
			var toTime time.Time
			if to != "" {
				t, err := time.Parse(time.RFC3339Nano, to)
				if err != nil {
					return fmt.Errorf("--to must be RFC 3339, e.g. 2024-01-15T15:00:00Z: %w", err)
				}
				if reset || from == "" {
					return fmt.Errorf("--to goes with --from, for a replay job (not --reset)")
				}
				toTime = t
			}
			if offsets != "" {
				n++
			}
			if earliest {
				spec.Earliest = true
				n++
			}
			if latest {
				if !reset {
					return fmt.Errorf("--latest skips what is waiting: it goes with --reset")
				}
				spec.Latest = true
				n++
			}
			if n != 1 {
				return fmt.Errorf("give exactly one of --from, --offsets, --earliest or (with --reset) --latest")
			}
			if reset && detach {
				return fmt.Errorf("--detach is for replay jobs; --reset returns at once")
			}
			if fromArchive != "" && (reset || from == "") {
				return fmt.Errorf("--from-archive takes --from (and --to): the time range of the events to read back")
			}
			cfg, c, cl, err := connectorClient(g, path, connector)
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "connector %s (group %s, topic %s)\n", c.Name, c.Group, c.Topic)
			if reset {
				if offsets != "" {
					if spec.Offsets, err = ops.ParseOffsets(offsets); err != nil {
						return err
					}
				}
				plan, err := ops.PlanReplay(cmd.Context(), adm, c.Group, c.Topic, spec)
				if err != nil {
					return err
				}
				plan.Print(w)
				if dryRun {
					fmt.Fprintln(w, "dry run: nothing changed")
					return nil
				}
				if err := plan.Apply(cmd.Context(), adm); err != nil {
					return err
				}
				fmt.Fprintf(w, "committed: start the connector's workers; firehose status -c %s shows the catch-up\n", path)
				return nil
			}
			if fromArchive != "" {
				return backfill(cmd.Context(), w, cl, cfg, c, fromArchive, spec.Time, toTime, path, dryRun, detach)
			}
			var ranges map[int32][2]int64
			if offsets != "" {
				if ranges, err = ops.ParseRanges(offsets); err != nil {
					return err
				}
			}
			plan, err := ops.PlanJob(cmd.Context(), adm, c.Topic, spec, ranges, toTime)
			if err != nil {
				return err
			}
			plan.Print(w)
			if len(plan.Rows) == 0 {
				return fmt.Errorf("nothing to replay in that range")
			}
			if dryRun {
				fmt.Fprintln(w, "dry run: no job submitted")
				return nil
			}
			fromOffs, untilOffs := map[int32]int64{}, map[int32]int64{}
			for _, r := range plan.Rows {
				fromOffs[r.Partition], untilOffs[r.Partition] = r.From, r.Until
			}
			id, err := connectors.SubmitReplay(cmd.Context(), adm, c.Group, c.Topic, fromOffs, untilOffs)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "replay job %s submitted (group %s)\n", id, connectors.ReplayGroup(c.Group, id))
			if detach {
				fmt.Fprintf(w, "follow it with firehose replay list -c %s, or firehose status\n", path)
				return nil
			}
			return followReplay(cmd.Context(), w, adm, c.Group, id, isTerminal(w))
		},
	}
	configFlag(cmd, &path)
	f := cmd.Flags()
	f.StringVar(&connector, "connector", "", "the connector to replay (required)")
	f.StringVar(&from, "from", "", "replay from this time (RFC 3339)")
	f.StringVar(&to, "to", "", "with --from: replay up to this time (RFC 3339; default the end now)")
	f.StringVar(&offsets, "offsets", "", "replay these partitions from these offsets, partition:from[-until],…")
	f.BoolVar(&earliest, "earliest", false, "replay everything the topic still holds")
	f.BoolVar(&latest, "latest", false, "with --reset: skip everything now in the topic")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&reset, "reset", false, "move the connector's own offsets instead (refused while its workers run)")
	f.BoolVar(&detach, "detach", false, "submit the job and return with its id")
	f.StringVar(&fromArchive, "from-archive", "", "read the events back from objects Firehose wrote (a directory, or s3://bucket/prefix) instead of Kafka")
	cmd.AddCommand(newReplayListCmd(g), newReplayCancelCmd(g))
	return cmd
}

func newReplayListCmd(g *globals) *cobra.Command {
	var path, connector string
	cmd := &cobra.Command{
		Use:   "list -c FILE [--connector NAME]",
		Short: "Show the replay jobs of every connector (or one): state and progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, cfg, kopts, err := g.setup(path)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-10s %-9s %-10s %25s  %s\n", "JOB", "STATE", "CONNECTOR", "EVENTS DONE/TOTAL", "WORKERS")
			for _, c := range cfg.Connectors {
				if connector != "" && c.Name != connector {
					continue
				}
				jobs, err := connectors.ListReplays(cmd.Context(), adm, c.Group)
				if err != nil {
					return err
				}
				for _, j := range jobs {
					fmt.Fprintf(w, "%-10s %-9s %-10s %25s  %d\n", j.ID, j.State(), c.Name, fmt.Sprintf("%d/%d", j.Done(), j.Total()), j.Members)
				}
			}
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&connector, "connector", "", "only this connector's jobs")
	return cmd
}

func newReplayCancelCmd(g *globals) *cobra.Command {
	var path, connector string
	cmd := &cobra.Command{
		Use:   "cancel -c FILE --connector NAME ID",
		Short: "Stop a replay job; what it delivered stays delivered",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, cl, err := connectorClient(g, path, connector)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := connectors.CancelReplay(cmd.Context(), kadm.NewClient(cl), c.Group, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replay job %s cancelled: its workers stop within %s\n", args[0], connectors.ReplayPoll)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&connector, "connector", "", "the job's connector (required)")
	return cmd
}

// isTerminal reports whether w is a terminal, for a progress bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// followReplay prints job id's progress until it is complete (nil),
// cancelled or gone (an error), or ctx ends: a bar redrawn every second
// on a terminal, else a line every 5 seconds.
func followReplay(ctx context.Context, w io.Writer, adm *kadm.Client, group, id string, tty bool) error {
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	start := time.Now()
	var first int64 = -1
	lastLine, missing := time.Time{}, 0
	warned := false
	for {
		jobs, err := connectors.ListReplays(ctx, adm, group)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(jobs, func(j connectors.ReplayJob) bool { return j.ID == id })
		if i < 0 {
			if missing++; missing > 30 {
				return fmt.Errorf("replay job %s: its group is gone", id)
			}
		} else {
			j := jobs[i]
			done, total := j.Done(), j.Total()
			if first < 0 {
				first = done
			}
			rate := float64(done-first) / time.Since(start).Seconds()
			eta := "-"
			if rate > 0 {
				eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
			}
			line := fmt.Sprintf("%d/%d events  %.0f/s  ETA %s", done, total, rate, eta)
			switch {
			case j.Complete():
				if tty {
					fmt.Fprintf(w, "\r%s %s\n", bar(done, total), line)
				}
				fmt.Fprintf(w, "replay job %s complete: %d events in %s\n", id, total, time.Since(start).Round(time.Second))
				return nil
			case j.Cancelled:
				if tty {
					fmt.Fprintln(w)
				}
				return fmt.Errorf("replay job %s was cancelled after %d of %d events", id, done, total)
			case j.Failed != "":
				if tty {
					fmt.Fprintln(w)
				}
				return fmt.Errorf("replay job %s failed after %d of %d events: %s", id, done, total, j.Failed)
			case tty:
				fmt.Fprintf(w, "\r%s %s   ", bar(done, total), line)
			case time.Since(lastLine) >= every:
				fmt.Fprintf(w, "replay job %s: %s, %d worker(s)\n", id, line, j.Members)
				lastLine = time.Now()
			}
			if j.Members == 0 && !warned && time.Since(start) > 3*connectors.ReplayPoll+10*time.Second {
				fmt.Fprintf(w, "\nno worker runs replay job %s yet: it runs in the processes that run the connector (firehose run)\n", id)
				warned = true
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// bar is a 30-character progress bar.
func bar(done, total int64) string {
	n := 30
	if total > 0 {
		n = int(30 * done / total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 30-n) + "]"
}

// connectorClient loads the config at path, finds connector name in it
// and makes a Kafka client: how the replay commands start. The caller
// closes the client.
func connectorClient(g *globals, path, name string) (*config.Config, connectors.Config, *kgo.Client, error) {
	_, cfg, kopts, err := g.setup(path)
	if err != nil {
		return nil, connectors.Config{}, nil, err
	}
	c, err := findConnector(cfg, name)
	if err != nil {
		return nil, connectors.Config{}, nil, err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, connectors.Config{}, nil, err
	}
	return cfg, c, cl, nil
}

func findConnector(cfg *config.Config, name string) (connectors.Config, error) {
	if name == "" {
		return connectors.Config{}, fmt.Errorf("--connector is required")
	}
	var names []string
	for _, c := range cfg.Connectors {
		if c.Name == name {
			return c, nil
		}
		names = append(names, c.Name)
	}
	return connectors.Config{}, fmt.Errorf("--connector %s: no such connector in the config (it has %v)", name, names)
}

// backfill reads the events of an archive's objects in [from, to) and
// delivers them through connector c as a replay job.
func backfill(ctx context.Context, w io.Writer, cl *kgo.Client, cfg *config.Config, c connectors.Config, src string, from, to time.Time, path string, dryRun, detach bool) error {
	var source archive.Source
	if rest, ok := strings.CutPrefix(src, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return fmt.Errorf("--from-archive %s: no bucket (s3://bucket/prefix)", src)
		}
		// The settings (endpoint, credentials) of a connector writing to
		// that bucket, else the AWS environment's.
		s3cfg := s3dest.Config{Bucket: bucket}
		for _, other := range cfg.Connectors {
			if sc, ok := other.Destination.(*s3dest.Config); ok && sc.Bucket == bucket {
				s3cfg = *sc
			}
		}
		s3cfg.Defaults()
		sink, err := s3dest.New(ctx, s3cfg)
		if err != nil {
			return err
		}
		defer sink.Close(ctx)
		source = sink.Archive(prefix)
	} else {
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			return fmt.Errorf("--from-archive %s: not a directory (or s3://bucket/prefix)", src)
		}
		source = archive.Dir(src)
	}
	if dryRun {
		names, err := source.List(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, name := range names {
			if archive.Readable(name) {
				n++
			}
		}
		fmt.Fprintf(w, "%d objects to read back from %s; dry run: nothing read\n", n, src)
		return nil
	}
	objects, events := 0, 0
	last := time.Now()
	id, total, err := archive.Backfill(ctx, cl, source, c, from, to, func(name string, n int) {
		objects++
		events += n
		if time.Since(last) >= 5*time.Second {
			fmt.Fprintf(w, "read %d objects, %d events in range\n", objects, events)
			last = time.Now()
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "read %d objects from %s: %d events in range, written to %s for the job\n", objects, src, total, c.Topic)
	fmt.Fprintf(w, "replay job %s submitted (group %s)\n", id, connectors.ReplayGroup(c.Group, id))
	if detach {
		fmt.Fprintf(w, "follow it with firehose replay list -c %s, or firehose status\n", path)
		return nil
	}
	return followReplay(ctx, w, kadm.NewClient(cl), c.Group, id, isTerminal(w))
}
