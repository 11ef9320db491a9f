package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/yamlconf"
)

// configFlag adds -c/--config; empty means $FIREHOSE_CONFIG, or else the
// embedded dev config.
func configFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "config", "c", "", "config file (default: $FIREHOSE_CONFIG, else the embedded dev config, which talks to 127.0.0.1:9092)")
}

// configPath is path, or $FIREHOSE_CONFIG when path is empty.
func configPath(path string) string {
	if path == "" {
		return os.Getenv("FIREHOSE_CONFIG")
	}
	return path
}

// opsScope is what the operating commands (status, replay, dlq,
// topology, produce) read of a config: Kafka, the topology, and the
// names, groups and topics of the processor and connectors, not their
// secrets.
var opsScope = &config.Scope{Connectors: []string{}}

// loadConfig loads path (or $FIREHOSE_CONFIG), or the embedded dev config
// when neither names a file; scope as in config.Options.
func loadConfig(path string, scope *config.Scope) (*config.Config, error) {
	opts := config.Options{Lookup: os.LookupEnv, Scope: scope}
	if path = configPath(path); path == "" {
		return config.Parse("embedded dev config", config.Dev(), opts)
	}
	return config.Load(path, opts)
}

// printConfigErrors prints each problem on its own line, as validate does.
func printConfigErrors(err error) error {
	fes := yamlconf.FieldErrors(err)
	if len(fes) == 0 {
		return err
	}
	for _, fe := range fes {
		fmt.Fprintln(os.Stderr, fe.Error())
	}
	fmt.Fprintf(os.Stderr, "%d problem(s) in the config\n", len(fes))
	return exitError{code: 2}
}

// setup is what most commands start with: the logger, the config (its
// problems printed as validate prints them) and the Kafka client options.
func (g *globals) setup(path string) (*slog.Logger, *config.Config, []kgo.Opt, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := loadConfig(path, opsScope)
	if err != nil {
		return nil, nil, nil, printConfigErrors(err)
	}
	kopts, err := kafkaclient.Options(cfg.Kafka, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return log, cfg, kopts, nil
}
