package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors/iceberg"
)

// icebergConfigs reads the iceberg sections of the config's enabled
// Iceberg connectors (the operating commands' scope leaves them out), by
// connector name; only, if not empty, picks one.
func icebergConfigs(path string, cfg *config.Config, only string) (map[string]*iceberg.Config, error) {
	var names []string
	for _, c := range cfg.Connectors {
		if c.Type == "iceberg" && c.IsEnabled() && (only == "" || c.Name == only) {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	full, err := loadConfig(path, &config.Scope{Connectors: names})
	if err != nil {
		return nil, printConfigErrors(err)
	}
	out := map[string]*iceberg.Config{}
	for _, c := range full.Connectors {
		if ic, ok := c.Destination.(*iceberg.Config); ok {
			out[c.Name] = ic
		}
	}
	return out, nil
}

func newIcebergCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "iceberg",
		Short: "Maintain the tables of Iceberg connectors",
	}
	cmd.AddCommand(newIcebergOrphansCmd(g))
	return cmd
}

func newIcebergOrphansCmd(g *globals) *cobra.Command {
	var (
		path, connector string
		olderThan       time.Duration
		del             bool
	)
	cmd := &cobra.Command{
		Use:   "orphans -c FILE --connector NAME [--older-than 72h] [--delete]",
		Short: "List, or delete, the files under an Iceberg connector's table that no snapshot references",
		Long: `orphans lists the files under the table's location that no snapshot
references and that are older than --older-than: the data files a worker
wrote before it was killed, or before another worker committed the same
batch, and the metadata of commits that did not complete. With --delete it
deletes them.

A data file waits for its commit for up to commit_interval, and for as long
as the catalog does not answer: --older-than must be longer than that, or a
file about to be committed is deleted from under its commit. The default,
72h, is Iceberg's own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if connector == "" {
				return fmt.Errorf("--connector is required")
			}
			_, cfg, _, err := g.setup(path)
			if err != nil {
				return err
			}
			ics, err := icebergConfigs(path, cfg, connector)
			if err != nil {
				return err
			}
			ic := ics[connector]
			if ic == nil {
				return fmt.Errorf("no enabled iceberg connector %q in the config", connector)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Minute)
			defer cancel()
			files, err := iceberg.Orphans(ctx, *ic, olderThan, del)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, f := range files {
				fmt.Fprintf(out, "%s\t%d\n", f.Path, f.SizeBytes)
			}
			verb := "found"
			if del {
				verb = "deleted"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %d orphaned files older than %s\n", verb, len(files), olderThan)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&connector, "connector", "", "the Iceberg connector whose table to clean")
	cmd.Flags().DurationVar(&olderThan, "older-than", 72*time.Hour, "only files older than this (longer than the longest a catalog outage may hold commits)")
	cmd.Flags().BoolVar(&del, "delete", false, "delete them (default: only list)")
	return cmd
}
