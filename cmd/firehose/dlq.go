package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/ops"
)

type dlqFlags struct {
	path, connector, stage, class, since string
	limit                                int
	asJSON, dryRun                       bool
}

func (f *dlqFlags) add(cmd *cobra.Command, selection bool) {
	configFlag(cmd, &f.path)
	if selection {
		cmd.Flags().StringVar(&f.connector, "connector", "", "only what this connector could not deliver")
		cmd.Flags().StringVar(&f.stage, "stage", "", "only this stage: processor, or connector:NAME")
		cmd.Flags().StringVar(&f.class, "class", "", "only this error class, e.g. invalid, decode, oversize, permanent")
		cmd.Flags().StringVar(&f.since, "since", "", "only dead letters from this time on (RFC 3339) or this long ago (e.g. 2h)")
		cmd.Flags().IntVar(&f.limit, "limit", 0, "at most this many (default all)")
	}
}

func (f *dlqFlags) filter() (ops.DLQFilter, error) {
	flt := ops.DLQFilter{Stage: f.stage, Class: f.class, Limit: f.limit}
	if f.connector != "" {
		if f.stage != "" {
			return flt, fmt.Errorf("give --connector or --stage, not both")
		}
		flt.Stage = dlq.ConnectorStage(f.connector)
	}
	if f.since != "" {
		if d, err := time.ParseDuration(f.since); err == nil {
			flt.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, f.since); err == nil {
			flt.Since = t
		} else {
			return flt, fmt.Errorf("--since must be RFC 3339 (2024-01-15T14:00:00Z) or a duration (2h), got %q", f.since)
		}
	}
	return flt, nil
}

// read loads the config and the dead letters the flags choose.
func (f *dlqFlags) read(cmd *cobra.Command, g *globals) (*config.Config, []kgo.Opt, []ops.DeadLetter, error) {
	flt, err := f.filter()
	if err != nil {
		return nil, nil, nil, err
	}
	_, cfg, kopts, err := g.setup(f.path)
	if err != nil {
		return nil, nil, nil, err
	}
	dls, err := ops.ReadDLQ(cmd.Context(), kopts, cfg.Topology.DLQ.Name, flt)
	return cfg, kopts, dls, err
}

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Read the dead-letter topic with its reasons, and redrive records",
	}
	cmd.AddCommand(newDLQListCmd(g), newDLQShowCmd(g), newDLQRedriveCmd(g))
	return cmd
}

// newDLQListCmd is firehose dlq list.
func newDLQListCmd(g *globals) *cobra.Command {
	var lf dlqFlags
	list := &cobra.Command{
		Use:   "list -c FILE [--connector NAME | --stage S] [--class C] [--since T]",
		Short: "List dead letters: where, when, which stage, and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, dls, err := lf.read(cmd, g)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if lf.asJSON {
				return printJSONLines(w, dls)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tTIME\tSTAGE\tCLASS\tSOURCE\tMESSAGE")
			for _, d := range dls {
				fmt.Fprintf(tw, "%d:%d\t%s\t%s\t%s\t%s/%s@%s\t%s\n", d.Partition, d.Offset, d.Time.UTC().Format(time.RFC3339), printable(d.Stage), printable(d.Class),
					printable(d.SourceTopic), printable(d.SourcePartition), printable(d.SourceOffset), oneLine(d.Message, 100))
			}
			tw.Flush()
			fmt.Fprintf(w, "%d dead letter(s); firehose dlq show -c FILE PARTITION:OFFSET prints one whole\n", len(dls))
			return nil
		},
	}
	lf.add(list, true)
	list.Flags().BoolVar(&lf.asJSON, "json", false, "one JSON object per line, with key and value")
	return list
}

// newDLQShowCmd is firehose dlq show.
func newDLQShowCmd(g *globals) *cobra.Command {
	var sf dlqFlags
	show := &cobra.Command{
		Use:   "show -c FILE PARTITION:OFFSET",
		Short: "Print one dead letter whole: reason, source, destination response, key and value",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cfg, kopts, err := g.setup(sf.path)
			if err != nil {
				return err
			}
			dls, err := ops.ReadDLQ(cmd.Context(), kopts, cfg.Topology.DLQ.Name, ops.DLQFilter{At: args[0]})
			if err != nil {
				return err
			}
			if len(dls) == 0 {
				return fmt.Errorf("no dead letter at %s in %s", args[0], cfg.Topology.DLQ.Name)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(dls[0])
		},
	}
	sf.add(show, false)
	return show
}

// newDLQRedriveCmd is firehose dlq redrive.
func newDLQRedriveCmd(g *globals) *cobra.Command {
	var rf dlqFlags
	redrive := &cobra.Command{
		Use:   "redrive -c FILE [--connector NAME | --stage S] [--class C] [--since T] [--dry-run]",
		Short: "Re-submit dead letters where they failed: the raw topic, or one connector",
		Long: `redrive re-submits the chosen dead letters unchanged (key, value and their
original headers), marked with a firehose.redrive header:

- what the processor refused goes back to the raw topic, and passes dedupe
  even though its sequence was seen (fix the producer or the config first, or
  it lands in the DLQ again);
- what a connector could not deliver goes back to the events topic addressed
  to that connector only (header firehose.connector): other connectors and
  the pull API skip it.

It prints how many records go where; --dry-run stops there. Redriven records
stay in the DLQ; --since keeps the next redrive from repeating them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, kopts, dls, err := rf.read(cmd, g)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			plan := map[string]int{}
			for _, d := range dls {
				topic, connector := ops.RedriveTarget(d, cfg.Topology.Raw.Name, cfg.Topology.Events.Name)
				if connector != "" {
					topic += " (for connector " + connector + ")"
				}
				plan[topic]++
			}
			for t, n := range plan {
				fmt.Fprintf(w, "%d record(s) -> %s\n", n, t)
			}
			if len(dls) == 0 {
				fmt.Fprintln(w, "nothing matches: no record redriven")
				return nil
			}
			if rf.dryRun {
				fmt.Fprintln(w, "dry run: nothing sent")
				return nil
			}
			cl, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			if _, err := ops.Redrive(cmd.Context(), cl, dls, cfg.Topology.Raw.Name, cfg.Topology.Events.Name); err != nil {
				return err
			}
			fmt.Fprintf(w, "redriven: %d record(s)\n", len(dls))
			return nil
		},
	}
	rf.add(redrive, true)
	redrive.Flags().BoolVar(&rf.dryRun, "dry-run", false, "print what would be sent and send nothing")
	return redrive
}

// oneLine makes s safe for one line of a terminal: white space runs
// become one space, control characters (an escape sequence a webhook put
// in its response, say) are shown escaped, and it is cut after n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return printable(s)
}

// printable escapes what a terminal would act on instead of print.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) && r != ' ' }) && utf8.ValidString(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func printJSONLines[T any](w io.Writer, vs []T) error {
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
