package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/app"
)

func newRunCmd(g *globals) *cobra.Command {
	var path, instanceID, listen, adminListen string
	var o app.Options
	cmd := &cobra.Command{
		Use:   "run -c FILE [--role processor|connector|api|all] [--connector NAME]",
		Short: "Run a production worker against the configured Kafka cluster",
		Long: `run is the production entry point. Several processes with the same config
share the work through their consumer groups: to scale, start more. SIGTERM
or Ctrl-C stops fetching, flushes open batches, commits what was delivered
and leaves the groups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if configPath(path) == "" {
				// The embedded dev config talks to a broker on
				// 127.0.0.1:9092: a production worker must not fall
				// back to it because a flag was forgotten.
				return errors.New("run needs a config: pass -c FILE or set FIREHOSE_CONFIG (firehose validate -c FILE checks one; firehose dev runs everything on the embedded dev config)")
			}
			for _, r := range o.Roles {
				if r == "all" {
					o.Roles = nil
					break
				}
				if r != app.RoleProcessor && r != app.RoleConnector && r != app.RoleAPI {
					return fmt.Errorf("--role must be processor, connector, api or all, got %q", r)
				}
			}
			cfg, err := loadConfig(path, o.Scope())
			if err != nil {
				return printConfigErrors(err)
			}
			if instanceID != "" || listen != "" || adminListen != "" {
				if instanceID != "" {
					cfg.Kafka.InstanceID = instanceID
				}
				if listen != "" {
					cfg.API.Listen = listen
				}
				if adminListen != "" {
					cfg.API.AdminListen = adminListen
				}
				if err := cfg.Validate(); err != nil {
					return printConfigErrors(fmt.Errorf("flags: %w", err))
				}
			}
			o.Log = log
			o.OnReady = func(addr string) { log.Info("ready", "http", addr) }
			if v, set := os.LookupEnv("GOMEMLIMIT"); set {
				log.Info("memory limit from GOMEMLIMIT", "limit", v)
			} else {
				limit, source := app.MemoryLimit(cfg, o, app.CgroupMemoryMax())
				debug.SetMemoryLimit(limit)
				log.Info("memory limit", "bytes", limit, "from", source)
			}
			return app.Run(cmd.Context(), cfg, o)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringSliceVar(&o.Roles, "role", nil, "roles to run: processor, connector, api or all (default all)")
	cmd.Flags().StringVar(&listen, "listen", "", "the HTTP listener (overrides api.listen), e.g. 0.0.0.0:8080 in a container")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "", "the admin listener for /metrics and /debug/pprof/ (overrides api.admin_listen)")
	cmd.Flags().StringVar(&instanceID, "instance-id", "", "static group membership: this worker's stable id, unique among the workers of its groups (overrides kafka.instance_id)")
	cmd.Flags().StringSliceVar(&o.Connectors, "connector", nil, "run only these connectors (default every enabled one)")
	cmd.Flags().DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 0, "how long a stop may take to flush, commit and leave the groups (default 30s); the process exits at most 5s after it")
	return cmd
}
