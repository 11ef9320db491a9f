package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
)

func newDevCmd(g *globals) *cobra.Command {
	var o app.DevOptions
	var path string
	var noGen, printConfig bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process on an embedded broker: the quickest way to see Firehose work",
		Long: `dev starts an in-process Kafka-protocol broker on 127.0.0.1:9092 (its data
kept under --data-dir, so it survives restarts), creates the topics, and runs
the processor, a file connector writing gzip NDJSON under <data-dir>/out, an
Iceberg connector committing a table (SQLite catalog) under <data-dir>/lake, an
HTTP listener on 127.0.0.1:8080 (/healthz), and a generator of demo lead
events. Ctrl-C flushes open batches, commits and stops.

-c FILE replaces the embedded config; in it, ${FIREHOSE_BROKER} and
${FIREHOSE_DATA_DIR} expand to the embedded broker and the data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if printConfig {
				_, err := cmd.OutOrStdout().Write(config.Dev())
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			if path != "" {
				if o.Config, err = os.ReadFile(path); err != nil {
					return fmt.Errorf("read config: %w", err)
				}
				o.ConfigName = path
			}
			if noGen {
				o.Rate = 0
			}
			o.Log, o.Out, o.Lookup = log, cmd.OutOrStdout(), os.LookupEnv
			err = app.Dev(cmd.Context(), o)
			if err != nil {
				return printConfigErrors(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.DataDir, "data-dir", ".firehose", "where the broker's log and the output files are kept")
	cmd.Flags().IntVar(&o.BrokerPort, "broker-port", 9092, "port of the embedded broker on 127.0.0.1")
	cmd.Flags().IntVar(&o.Rate, "rate", 50, "demo events generated per second")
	cmd.Flags().BoolVar(&noGen, "no-generator", false, "do not generate demo events")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the embedded config and exit")
	configFlag(cmd, &path)
	return cmd
}
