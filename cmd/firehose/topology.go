package main

import (
	"fmt"
	"strings"

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
	var detailed, allowIncrease bool
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
			if !apply {
				if detailed && !plan.Empty() {
					return exitError{code: 2} // changes pending, as terraform plan -detailed-exitcode
				}
				return nil
			}
			if plan.Empty() {
				return nil
			}
			if raises := plan.PartitionIncreases(); len(raises) > 0 && !allowIncrease {
				fmt.Fprintf(out, "\nnot applied: raising partitions moves keys to other partitions (%s).\n", strings.Join(raises, ", "))
				fmt.Fprintln(out, "A moved resource's events in flight may be processed out of order, and its dedupe state stays with its old")
				fmt.Fprintln(out, "partition, so a duplicate arriving on the new one is let through. Stop the producers, let the processor and")
				fmt.Fprintln(out, "connectors drain to lag 0, then run apply again with --allow-partition-increase.")
				return exitError{code: 1}
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
keys between partitions would break per-resource order); it says so instead.
It raises one only with --allow-partition-increase, after saying what that
moves.`,
		Args: cobra.NoArgs,
		RunE: run(true),
	}
	configFlag(plan, &path)
	configFlag(apply, &path)
	plan.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when the cluster differs from the config (0: it matches), for CI drift checks")
	apply.Flags().BoolVar(&allowIncrease, "allow-partition-increase", false, "raise partition counts as the config says, although that moves keys between partitions")
	cmd.AddCommand(plan, apply)
	return cmd
}
