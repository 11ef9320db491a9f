package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/topology"
)

func newTopologyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Compare the cluster's topics with the config (plan) and reconcile them (apply)",
	}
	var path string
	run := func(apply bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			_, cfg, kopts, err := g.setup(path)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			specs := topology.Specs(cfg.Topology)
			plan, err := topology.MakePlan(ctx, cl, specs)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			plan.Print(out)
			if !apply || plan.Empty() {
				return nil
			}
			if err := plan.Apply(ctx, cl); err != nil {
				return err
			}
			after, err := topology.MakePlan(ctx, cl, specs)
			if err != nil {
				return err
			}
			if !after.Empty() {
				fmt.Fprintln(out, "applied, but these still differ:")
				after.Print(out)
				return exitError{code: 1}
			}
			fmt.Fprintln(out, "applied: the cluster now matches the config")
			return nil
		}
	}
	plan := &cobra.Command{
		Use:   "plan [-c FILE]",
		Short: "Print what differs between the config and the cluster: missing topics, partition counts, topic configs",
		Args:  cobra.NoArgs,
		RunE:  run(false),
	}
	apply := &cobra.Command{
		Use:   "apply [-c FILE]",
		Short: "Create missing topics, raise partition counts and set topic configs; never lowers a partition count",
		Long: `apply creates missing topics and alters partition counts and topic configs
until the cluster matches the config. It is idempotent: running it again
changes nothing. It never lowers a partition count (Kafka cannot, and moving
keys between partitions would break per-resource order); it says so instead.`,
		Args: cobra.NoArgs,
		RunE: run(true),
	}
	configFlag(plan, &path)
	configFlag(apply, &path)
	cmd.AddCommand(plan, apply)
	return cmd
}
