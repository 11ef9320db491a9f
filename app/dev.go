package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/topology"
)

// DevOptions configure Dev.
type DevOptions struct {
	DataDir    string // default .firehose
	BrokerPort int    // default 9092; -1 picks a free port (tests)
	Rate       int    // generated events per second; 0 disables the generator
	// Config replaces the embedded dev config; ConfigName names it in
	// errors. ${FIREHOSE_BROKER} and ${FIREHOSE_DATA_DIR} expand to the
	// embedded broker's address and the data dir.
	Config     []byte
	ConfigName string
	Lookup     config.LookupFunc
	Log        *slog.Logger
	Out        io.Writer // where the ready banner goes
}

// Dev runs everything in one process on loopback: an embedded broker with
// its data under DataDir, the topology, the processor, the connectors, the
// HTTP listener and the demo generator. It stops cleanly when ctx ends.
func Dev(ctx context.Context, o DevOptions) error {
	if o.DataDir == "" {
		o.DataDir = ".firehose"
	}
	if o.BrokerPort == 0 {
		o.BrokerPort = 9092
	}
	if o.Config == nil {
		o.Config, o.ConfigName = config.Dev(), "embedded dev config"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	// The data dir holds raw, unmasked events: only its owner may enter
	// it, whatever modes the files inside get.
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev data dir: %w", err)
	}
	if err := os.Chmod(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev data dir: %w", err)
	}
	broker, err := embedded.Start(embedded.Options{Port: max(o.BrokerPort, 0), DataDir: o.DataDir})
	if err != nil {
		return err
	}
	defer broker.Close()

	env := map[string]string{"FIREHOSE_BROKER": broker.Addr, "FIREHOSE_DATA_DIR": o.DataDir}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		if o.Lookup != nil {
			return o.Lookup(k)
		}
		return "", false
	}
	cfg, err := config.Parse(o.ConfigName, o.Config, config.Options{Lookup: lookup})
	if err != nil {
		return err
	}
	kopts, err := kafkaclient.Options(cfg.Kafka, o.Log)
	if err != nil {
		return err
	}
	admin, err := kgo.NewClient(kopts...)
	if err != nil {
		return err
	}
	err = topology.Ensure(ctx, admin, cfg.Topology)
	admin.Close()
	if err != nil {
		return fmt.Errorf("apply topology: %w", err)
	}

	key, err := devPositionKey(o.DataDir)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return Run(gctx, cfg, Options{
			Log:     o.Log,
			OnReady: func(addr string) { banner(o, cfg, broker.Addr, addr) },
			// dev-<account> tokens only where no real ones are
			// configured: beside real tokens they would open every
			// account to anyone who knows the pattern.
			DevTokens:   !cfg.API.PullEnabled(),
			PositionKey: key,
		})
	})
	if o.Rate > 0 {
		g.Go(func() error { return generate(gctx, cfg, kopts, o.Rate, o.Log) })
	}
	return g.Wait()
}

func banner(o DevOptions, cfg *config.Config, brokerAddr, httpAddr string) {
	if o.Out == nil {
		return
	}
	w := o.Out
	fmt.Fprintf(w, "\nFirehose dev is ready.\n\n")
	fmt.Fprintf(w, "  Kafka broker   %s (embedded; data kept in %s)\n", brokerAddr, filepath.Join(o.DataDir, "kafka"))
	fmt.Fprintf(w, "  Topics         %s -> processor -> %s (bad input: %s)\n", cfg.Topology.Raw.Name, cfg.Topology.Events.Name, cfg.Topology.DLQ.Name)
	for _, c := range cfg.Connectors {
		if fc, ok := c.Destination.(*file.Config); ok && c.IsEnabled() {
			fmt.Fprintf(w, "  Files land in  %s/%s (connector %q, every %s or %d events)\n", fc.Dir, fc.Path, c.Name, c.Batch.MaxAge, c.Batch.MaxEvents)
		}
		if ic, ok := c.Destination.(*iceberg.Config); ok && c.IsEnabled() {
			fmt.Fprintf(w, "  Iceberg table  %s.%s in %s (connector %q, catalog %s, a commit every %s)\n", ic.Namespace, ic.Table, ic.Warehouse, c.Name, ic.Catalog.URI, ic.CommitInterval)
		}
	}
	if httpAddr != "" {
		fmt.Fprintf(w, "  Health         http://%s/healthz\n", httpAddr)
		if cfg.API.PullEnabled() {
			fmt.Fprintf(w, "  Pull API       http://%s/v1/stream (the configured tokens; dev tokens are off beside them)\n", httpAddr)
		} else {
			fmt.Fprintf(w, "  Pull API       http://%s/v1/stream (dev tokens: dev-<account_id>, e.g. dev-acc_1)\n", httpAddr)
		}
	}
	if o.Rate > 0 {
		fmt.Fprintf(w, "  Generator      %d demo events/s (--rate N, or --no-generator)\n", o.Rate)
	}
	fmt.Fprintf(w, "\nProduce an event with kcat (keyed by resource id):\n")
	fmt.Fprintf(w, "  echo 'lead_42|{\"event_id\":\"evt_1\",\"timestamp\":\"%s\",\"account_id\":\"acc_1\",\"resource_id\":\"lead_42\",\"sequence\":1,\"event_type\":\"lead.created\"}' \\\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	fmt.Fprintf(w, "    | kcat -P -b %s -t %s -K '|'\n", brokerAddr, cfg.Topology.Raw.Name)
	fmt.Fprintf(w, "or generate some:  firehose produce --generate 1000\n")
	fmt.Fprintf(w, "Read the output:   zcat %s/events/*/*/*/*/*.gz | head\n", filepath.Join(o.DataDir, "out"))
	if httpAddr != "" && !cfg.API.PullEnabled() {
		fmt.Fprintf(w, "Pull a page:       curl -H 'Authorization: Bearer dev-acc_1' 'http://%s/v1/stream?position=tail&limit=5'\n", httpAddr)
		fmt.Fprintf(w, "Follow account 1:  firehose tail --url http://%s --token dev-acc_1\n", httpAddr)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Ctrl-C stops: open batches are flushed and committed first.\n\n")
}

// generate produces demo events at rate per second until ctx ends.
func generate(ctx context.Context, cfg *config.Config, kopts []kgo.Opt, rate int, log *slog.Logger) error {
	cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(20*time.Millisecond), kgo.DefaultProduceTopic(cfg.Topology.Raw.Name))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	g := generator.New(uint64(time.Now().UnixNano()), 1000)
	tick := 50 * time.Millisecond
	perTick := max(1, rate*int(tick)/int(time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	var failed atomic.Bool
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = cl.Flush(fctx)
			return nil
		case <-t.C:
		}
		for range perTick {
			e := g.Next()
			val, _ := schemas.JSON{}.Append(nil, e)
			cl.Produce(ctx, &kgo.Record{Key: []byte(e.ResourceID), Value: val}, func(_ *kgo.Record, err error) {
				if err != nil && ctx.Err() == nil && failed.CompareAndSwap(false, true) {
					// log once; the client keeps retrying the rest
					log.Warn("generator: produce failed", "err", err)
				}
			})
		}
	}
}

// devPositionKey returns the key that signs pull API positions in dev,
// made once and kept in the data dir so positions survive a restart.
func devPositionKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "position.key")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	key := []byte(hex.EncodeToString(b))
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("keep the dev position key: %w", err)
	}
	return key, nil
}
