package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/testsupport/embedded"
)

func newBrokerCmd(_ *globals) *cobra.Command {
	var o embedded.Options
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run only the embedded Kafka-protocol broker on loopback, for tools, tests and benchmarks",
		Long: `broker runs the same in-process broker as firehose dev (franz-go's kfake) and
nothing else, until interrupted. Point any Kafka client, or firehose run and
produce with FIREHOSE_BROKER=127.0.0.1:PORT, at it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := embedded.Start(o)
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "broker listening on %s\n", b.Addr)
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Port, "port", 9092, "port to listen on")
	cmd.Flags().StringVar(&o.Host, "host", "127.0.0.1", "address to listen on (0.0.0.0 in a container)")
	cmd.Flags().StringVar(&o.Advertise, "advertise", "", "host:port clients are told to connect to (default: the listener's); in a container, its published address")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "keep the log under this directory (default: in memory only)")
	return cmd
}
