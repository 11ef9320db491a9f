package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/ops"
)

func newStatusCmd(g *globals) *cobra.Command {
	var (
		path     string
		asJSON   bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status -c FILE [--json]",
		Short: "Show lag, throughput, the oldest waiting event and dead letters of the processor and every connector",
		Long: `status reads, from Kafka alone, for the processor and each enabled connector:
its consumer group's state and workers, lag per partition and in total, events
committed per second (measured over --interval), the age of the oldest event
not yet committed, when a connector last committed a delivery, and the last
hour's dead letters with their share of what was committed; for an Iceberg
connector, its table's current snapshot and the offsets it holds, from the
catalog. --json prints the
same for scripts. While a replayed connector catches up, its lag falls and the
oldest waiting age shows how far back it still is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, cfg, kopts, err := g.setup(path)
			if err != nil {
				return err
			}
			var ws []ops.Worker
			if cfg.Processor.IsEnabled() {
				ws = append(ws, ops.Worker{Name: "processor", Kind: "processor", Group: cfg.Processor.Group, Topic: cfg.Topology.Raw.Name, Stage: "processor"})
			}
			for _, c := range cfg.Connectors {
				if c.IsEnabled() {
					ws = append(ws, ops.Worker{Name: c.Name, Kind: "connector", Group: c.Group, Topic: c.Topic, Stage: dlq.ConnectorStage(c.Name)})
				}
			}
			st, err := ops.Status(cmd.Context(), kopts, cfg.Topology.DLQ.Name, ws, interval)
			if err != nil {
				return err
			}
			tables, err := icebergConfigs(path, cfg, "")
			if err != nil {
				return err
			}
			for i := range st {
				if ic := tables[st[i].Name]; ic != nil && st[i].Kind == "connector" {
					ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
					st[i].Table = iceberg.Inspect(ctx, *ic, st[i].Name, st[i].Topic)
					cancel()
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			ops.PrintStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how long to measure the rate of commits over")
	return cmd
}
