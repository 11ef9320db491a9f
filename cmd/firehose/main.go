// Command firehose is the one Firehose binary. Its commands: dev, run,
// produce, topology, validate, broker, tail, replay, dlq, status, token and
// version (newRoot lists them). It parses flags and wires packages
// together; the work is done in those packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "firehose:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a code after its message was printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type globals struct {
	logLevel  string
	logFormat string
}

func newRoot() *cobra.Command {
	var g globals
	root := &cobra.Command{
		Use:   "firehose",
		Short: "Stream events from Kafka to where they are used: filter, dedupe, mask, batch and deliver",
		Long: `Firehose takes events from a raw Kafka topic, filters, de-duplicates, enriches
and masks them into the events topic, and delivers them in batches to files,
object stores, queues and webhooks, committing offsets only after delivery.

Start with:  firehose dev          (everything in one process, on an embedded broker)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newDevCmd(&g),
		newRunCmd(&g),
		newProduceCmd(&g),
		newTopologyCmd(&g),
		newValidateCmd(&g),
		newBrokerCmd(&g),
		newTailCmd(&g),
		newReplayCmd(&g),
		newDLQCmd(&g),
		newStatusCmd(&g),
		newIcebergCmd(&g),
		newTokenCmd(&g),
		newVersionCmd(),
	)
	return root
}

func (g *globals) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", g.logFormat)
}
