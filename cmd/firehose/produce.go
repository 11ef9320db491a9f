package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/firehose/firehose/app/codecs"
	"github.com/firehose/firehose/ingest"
)

func newProduceCmd(g *globals) *cobra.Command {
	var path, topic string
	var generate, resources int
	var seed uint64
	var strict bool
	cmd := &cobra.Command{
		Use:   "produce [-c FILE] [FILE...] | --generate N",
		Short: "Validate NDJSON events and produce them to the raw topic, keyed by resource_id",
		Long: `produce reads one JSON event per line from the files named, or from stdin
when there are none, validates each, and produces it to the raw topic keyed
by its resource_id, with acks from all replicas and the idempotent producer.
A line that fails validation is reported with its line number and skipped
(--strict stops instead). --generate N sends N demo events instead.
At the end it prints how many were sent and rejected, and the rate.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cfg, kopts, err := g.setup(path)
			if err != nil {
				return err
			}
			if topic == "" {
				topic = cfg.Topology.Raw.Name
			}
			cs, err := codecs.Open(cmd.Context(), cfg, slog.Default(), codecs.WriteRaw)
			if err != nil {
				return err
			}
			codec := cs.RawWriter
			cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(10*time.Millisecond), kgo.ProducerBatchMaxBytes(8<<20))...)
			if err != nil {
				return err
			}
			defer cl.Close()
			stderr := cmd.ErrOrStderr()
			p := ingest.New(cl, ingest.Options{
				Topic: topic, Codec: codec, Strict: strict,
				MaxEventBytes: int(cfg.Processor.MaxEventBytes),
				OnReject: func(r ingest.Rejection) {
					fmt.Fprintf(stderr, "\rrejected %s\n", r.Error())
				},
			})
			ctx := cmd.Context()
			start := time.Now()
			var total int64
			for _, a := range args {
				if st, err := os.Stat(a); err == nil {
					total += st.Size()
				}
			}
			stopBar := progressBar(stderr, func() string { return p.ProgressLine(start, total) })
			switch {
			case generate > 0:
				err = p.Generate(ctx, generate, seed, resources)
			case len(args) == 0:
				err = p.Lines(ctx, cmd.InOrStdin(), "stdin")
			default:
				for _, a := range args {
					var f *os.File
					if f, err = os.Open(a); err != nil {
						break
					}
					err = p.Lines(ctx, f, a)
					f.Close()
					if err != nil {
						break
					}
				}
			}
			ferr := p.Finish(ctx)
			stopBar()
			el := time.Since(start)
			sent := p.Progress.Sent.Load()
			fmt.Fprintf(cmd.OutOrStdout(), "sent %d, rejected %d, in %s (%.0f events/s) to %s\n",
				sent, p.Progress.Rejected.Load(), el.Round(time.Millisecond), float64(sent)/max(el.Seconds(), 0.001), topic)
			if err != nil {
				return err
			}
			return ferr
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to produce to (default: topology.raw.name)")
	cmd.Flags().IntVar(&generate, "generate", 0, "send N generated demo events instead of reading input")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of --generate, for reproducible events")
	cmd.Flags().IntVar(&resources, "resources", 1000, "number of distinct resources --generate spreads events over")
	cmd.Flags().BoolVar(&strict, "strict", false, "stop at the first invalid line instead of skipping it")
	return cmd
}

// progressBar redraws line() on w every 200 ms when w is a terminal, and
// returns a function that stops it and clears the line.
func progressBar(w io.Writer, line func() string) (stop func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(w, "\r\033[K%s", line())
			}
		}
	}()
	return func() { close(done); <-finished }
}
