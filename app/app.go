// Package app wires the components of one Firehose process from a loaded
// config: the processor, the connector workers and the HTTP listener, each
// in its own goroutine owned by one errgroup, all stopped by one context.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/firehose/firehose/app/codecs"
	"github.com/firehose/firehose/app/metrics"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/internal/httpserver"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/processor"
	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/schemas"
)

// Roles a process can take.
const (
	RoleProcessor = "processor"
	RoleConnector = "connector"
	RoleAPI       = "api"
)

// Options choose what a process runs.
type Options struct {
	// Roles to run; empty runs all.
	Roles []string
	// Connectors limits the connector role to these names; empty runs
	// every enabled connector.
	Connectors []string
	Log        *slog.Logger
	// OnReady is called once, when the HTTP listener is bound and every
	// component has been assigned its partitions.
	OnReady func(httpAddr string)
	// OnAdmin, if set, is called with the admin listener's address once
	// it is bound (api.admin_listen).
	OnAdmin func(addr string)
	// ShutdownTimeout bounds a stop (default
	// config.DefaultShutdownTimeout): each connector's flush and commits,
	// the processor's last transaction, and leaving the groups. Run
	// returns at most StopMargin after it, whatever the groups are doing.
	ShutdownTimeout time.Duration
	// DevTokens makes the pull API accept dev-<account_id> for any
	// account, and serve even without configured tokens. Only firehose dev
	// sets it.
	DevTokens bool
	// Metrics is the process's registry; nil makes one. Tests pass one
	// to read it.
	Metrics *metrics.Set
	// PositionKey signs pull API positions when the config has no
	// api.position_key (firehose dev keeps one in its data dir).
	PositionKey []byte
}

func (o Options) has(role string) bool { return len(o.Roles) == 0 || slices.Contains(o.Roles, role) }

// Scope is the part of the config the roles use: only it needs its
// environment variables set.
func (o Options) Scope() *config.Scope {
	s := &config.Scope{Processor: o.has(RoleProcessor), API: o.has(RoleAPI), Connectors: []string{}}
	if o.has(RoleConnector) {
		s.Connectors = o.Connectors // nil: all
	}
	return s
}

// Run runs the process until ctx ends, then drains and returns. It returns
// the first component error; the others are stopped.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	kopts, err := kafkaclient.Options(cfg.Kafka, o.Log)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, cfg.Tracing)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the last spans, briefly: a collector that is down must
		// not hold the stop.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			o.Log.Warn("tracing: last spans not exported", "err", err)
		}
	}()
	var writes []string
	if o.has(RoleProcessor) && cfg.Processor.IsEnabled() {
		writes = append(writes, codecs.WriteEvents)
	}
	cs, err := codecs.Open(ctx, cfg, o.Log, writes...)
	if err != nil {
		return err
	}
	var readies []func() bool
	var beats []*heartbeat.Beat
	var groups []string
	g, gctx := errgroup.WithContext(ctx)
	m := o.Metrics
	if m == nil {
		m = metrics.New()
	}

	if o.has(RoleProcessor) && cfg.Processor.IsEnabled() {
		beat := heartbeat.New("the processor")
		beats = append(beats, beat)
		p, err := processor.New(processor.Options{Config: *cfg, Kafka: kopts, Beat: beat, In: cs.RawReader, Out: cs.EventsWriter, ClientOpts: append(kafkaclient.GroupOptions(cfg.Kafka, "processor"), m.KafkaHooks("processor")), Log: o.Log, ShutdownTimeout: o.ShutdownTimeout})
		if err != nil {
			return err
		}
		m.Processor(p.Stats())
		groups = append(groups, cfg.Processor.Group)
		readies = append(readies, p.Ready)
		g.Go(func() error { return p.Run(gctx) })
	}
	if o.has(RoleConnector) {
		for _, c := range cfg.Connectors {
			if !c.IsEnabled() || c.NotRun || (len(o.Connectors) > 0 && !slices.Contains(o.Connectors, c.Name)) {
				continue
			}
			beat := heartbeat.New("connector " + c.Name)
			beats = append(beats, beat)
			sink, err := destinations.NewSink(ctx, c)
			if err != nil {
				return err
			}
			w, err := connectors.New(connectors.Options{
				Connector:       destinations.RuntimeConfig(c),
				DLQTopic:        cfg.Topology.DLQ.Name,
				DLQMaxBytes:     cfg.Topology.DLQ.MaxRecordBytes(),
				EventsEncoding:  cfg.Topology.Events.Encoding,
				Codec:           cs.EventsReader,
				Sink:            sink,
				Kafka:           append(append(slices.Clip(kopts), kafkaclient.GroupOptions(cfg.Kafka, c.Name)...), m.KafkaHooks(dlq.ConnectorStage(c.Name))),
				Log:             o.Log,
				ShutdownTimeout: o.ShutdownTimeout,
				RevokeTimeout:   cfg.Kafka.RebalanceTimeout / 2,
				Beat:            beat,
				Observer:        m.Observer(c.Name),
			})
			if err != nil {
				return fmt.Errorf("connector %s: %w", c.Name, err)
			}
			m.Connector(c.Name, w.Stats())
			groups = append(groups, c.Group)
			readies = append(readies, w.Ready)
			g.Go(func() error {
				defer sink.Close(context.WithoutCancel(gctx))
				return w.Run(gctx)
			})
		}
	}
	for _, name := range o.Connectors {
		if !slices.ContainsFunc(cfg.Connectors, func(c config.Connector) bool { return c.Name == name }) {
			return fmt.Errorf("--connector %s: no connector of that name in the config", name)
		}
	}
	ready := func() bool {
		for _, r := range readies {
			if !r() {
				return false
			}
		}
		return true
	}
	var pull *pullapi.Server
	if o.has(RoleAPI) && cfg.API.Listen != "off" && (cfg.API.PullEnabled() || o.DevTokens) {
		var codec schemas.Codec // json and avro: the server's own reading
		if schemas.IsConfluent(cfg.Topology.Events.Encoding) {
			codec = cs.EventsReader
		}
		if pull, err = newPullAPI(cfg, o, kopts, codec, m.PullRequest); err != nil {
			return err
		}
		g.Go(func() error { return pull.Run(gctx) })
	}
	// One admin client watches this process's groups: for lag at scrape
	// time and for groups that make no progress.
	var health func() error
	var groupsClient *kgo.Client
	if len(groups) > 0 {
		if groupsClient, err = kgo.NewClient(kopts...); err != nil {
			return err
		}
		defer groupsClient.Close()
		wd := newGroupWatchdog(kadm.NewClient(groupsClient), groups, cfg.Kafka.SessionTimeout+cfg.Kafka.RebalanceTimeout, o.Log)
		health = wd.Health
		g.Go(func() error { return wd.Run(gctx) })
	}
	if len(beats) > 0 {
		groupsHealth := health
		health = func() error {
			if err := heartbeat.Check(beats, cfg.API.StallTimeout, time.Now()); err != nil {
				return err
			}
			if groupsHealth != nil {
				return groupsHealth()
			}
			return nil
		}
	}
	// The operators' endpoints: metrics and profiles, on the admin
	// listener when there is one, else on the API's.
	admin := func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", m.Handler())
		if cfg.API.Pprof {
			// Profiles of CPU, heap, goroutines and blocking, for a
			// listener that is not public (api.pprof documents it).
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
	}
	separateAdmin := cfg.API.AdminListen != "" && cfg.API.AdminListen != "off"
	if groupsClient != nil && (cfg.API.Listen != "off" || separateAdmin) {
		m.Lag(groupsClient, groups, o.Log)
	}
	var addr string
	if cfg.API.Listen != "off" {
		srv, err := httpserver.Listen(cfg.API.Listen, ready, health, o.Log)
		if err != nil {
			return err
		}
		srv.Limits.MaxConnectionsPerClient = cfg.API.MaxConnectionsPerClient
		if pull != nil {
			pull.Register(srv.Mux)
		}
		if !separateAdmin {
			admin(srv.Mux)
		}
		addr = srv.Addr()
		g.Go(func() error { return srv.Serve(gctx) })
	}
	if separateAdmin {
		srv, err := httpserver.Listen(cfg.API.AdminListen, ready, health, o.Log)
		if err != nil {
			return fmt.Errorf("api.admin_listen: %w", err)
		}
		srv.Limits.MaxConnectionsPerClient = cfg.API.MaxConnectionsPerClient
		admin(srv.Mux)
		o.Log.Info("admin listener", "addr", srv.Addr())
		if o.OnAdmin != nil {
			o.OnAdmin(srv.Addr())
		}
		g.Go(func() error { return srv.Serve(gctx) })
	}
	if o.OnReady != nil {
		var once atomic.Bool
		g.Go(func() error {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
					if ready() && once.CompareAndSwap(false, true) {
						o.OnReady(addr)
						return nil
					}
				}
			}
		})
	}
	err = waitBounded(gctx, g.Wait, o.ShutdownTimeout, o.Log)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// StopMargin is how long Run may take past the shutdown timeout to return
// once a stop began: the components bound their own work by the timeout,
// and this is the last guard.
const StopMargin = 5 * time.Second

// ErrStopTimeout is returned by Run when components had not stopped within
// the shutdown timeout plus StopMargin. Nothing was committed past what was
// delivered, so a restart delivers again from the last commit.
var ErrStopTimeout = errors.New("stop did not finish within the shutdown timeout")

// waitBounded waits for wait to return, but once stopping (ctx done) no
// longer than timeout plus StopMargin.
func waitBounded(stopping context.Context, wait func() error, timeout time.Duration, log *slog.Logger) error {
	if timeout <= 0 {
		timeout = config.DefaultShutdownTimeout
	}
	errc := make(chan error, 1)
	go func() { errc <- wait() }()
	select {
	case err := <-errc:
		return err
	case <-stopping.Done():
	}
	t := time.NewTimer(timeout + StopMargin)
	defer t.Stop()
	select {
	case err := <-errc:
		return err
	case <-t.C:
		log.Error("components did not stop within the shutdown timeout; exiting with their work abandoned (a restart delivers again from the last commit)", "timeout", timeout+StopMargin)
		return ErrStopTimeout
	}
}

func newPullAPI(cfg *config.Config, o Options, kopts []kgo.Opt, codec schemas.Codec, onRequest func(int, time.Duration)) (*pullapi.Server, error) {
	key := []byte(cfg.API.PositionKey)
	if len(key) == 0 {
		key = o.PositionKey
	}
	signer, err := pullapi.NewSigner(key)
	if err != nil {
		return nil, fmt.Errorf("api.position_key: %w", err)
	}
	tokens, err := pullapi.NewTokens(cfg.API.Tokens, cfg.API.TokensFile, o.DevTokens, o.Log)
	if err != nil {
		return nil, fmt.Errorf("api.tokens_file: %w", err)
	}
	return pullapi.New(pullapi.Options{
		Kafka:     kopts,
		Topic:     cfg.Topology.Events.Name,
		Encoding:  cfg.Topology.Events.Encoding,
		Codec:     codec,
		Signer:    signer,
		Tokens:    tokens,
		Log:       o.Log,
		Limits:    pullapi.Limits{PerToken: cfg.API.MaxRequestsPerToken, Total: cfg.API.MaxRequests},
		OnRequest: onRequest,
	})
}
