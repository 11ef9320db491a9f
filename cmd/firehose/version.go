package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/internal/buildinfo"
)

// versionLine is what firehose version and --version print.
func versionLine() string {
	bi := buildinfo.Read()
	s := fmt.Sprintf("firehose %s (revision %s", bi.Version, bi.Revision)
	if bi.Modified {
		s += ", modified"
	}
	return s + ", " + bi.GoVersion + ")"
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(buildinfo.Read())
			}
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
