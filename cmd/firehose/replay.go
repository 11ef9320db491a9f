package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/ops"
)

func newReplayCmd(g *globals) *cobra.Command {
	var (
		path, connector, from, offsets string
		earliest, latest, dryRun       bool
	)
	cmd := &cobra.Command{
		Use:   "replay -c FILE --connector NAME (--from TIME | --offsets P:O,… | --earliest | --latest) [--dry-run]",
		Short: "Deliver a connector's events again from a time or offset (or skip ahead)",
		Long: `replay moves a connector's committed offsets, so it delivers again from there
(or, with --latest, skips what is waiting). It prints, per partition, the
committed and the new offset and how many events will be delivered again,
before it changes anything; --dry-run stops there.

--from takes RFC 3339 (2024-01-15T14:00:00Z): the first event that reached
the events topic at or after that time, per partition. --offsets sets only the
partitions it names.

Kafka only lets a consumer group's offsets change while the group has no
members, so replay refuses while any worker runs this connector, and names
them. Stop those workers, replay, start them again; the connector then
catches up, which firehose status shows.`,
		Example: `  firehose replay -c firehose.yaml --connector s3-archive --from 2024-01-15T14:00:00Z --dry-run
  firehose replay -c firehose.yaml --connector webhook --offsets 0:1200,3:4000`,
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
			if offsets != "" {
				o, err := ops.ParseOffsets(offsets)
				if err != nil {
					return err
				}
				spec.Offsets = o
				n++
			}
			if earliest {
				spec.Earliest = true
				n++
			}
			if latest {
				spec.Latest = true
				n++
			}
			if n != 1 {
				return fmt.Errorf("give exactly one of --from, --offsets, --earliest or --latest")
			}
			_, cfg, kopts, err := g.setup(path)
			if err != nil {
				return err
			}
			c, err := findConnector(cfg, connector)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			plan, err := ops.PlanReplay(cmd.Context(), adm, c.Group, c.Topic, spec)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "connector %s (group %s, topic %s)\n", c.Name, c.Group, c.Topic)
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
		},
	}
	configFlag(cmd, &path)
	f := cmd.Flags()
	f.StringVar(&connector, "connector", "", "the connector to replay (required)")
	f.StringVar(&from, "from", "", "replay from this time (RFC 3339)")
	f.StringVar(&offsets, "offsets", "", "replay from these offsets, partition:offset,…")
	f.BoolVar(&earliest, "earliest", false, "replay everything the topic still holds")
	f.BoolVar(&latest, "latest", false, "skip everything now in the topic")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
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
