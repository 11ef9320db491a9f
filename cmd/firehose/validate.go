package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd(_ *globals) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a config file and print every problem with its file, line and field",
		Long: `validate loads the config the way every other command does (expanding
${VAR} and ${VAR:-default} from the environment), and prints each problem as
FILE:LINE:COLUMN: FIELD: MESSAGE. It exits 0 when the config is valid and 2
when it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, nil)
			if err != nil {
				return printConfigErrors(err)
			}
			name := path
			if name == "" {
				name = "embedded dev config"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d connector(s), topics %s -> %s\n", name, len(cfg.Connectors), cfg.Topology.Raw.Name, cfg.Topology.Events.Name)
			return nil
		},
	}
	configFlag(cmd, &path)
	return cmd
}
