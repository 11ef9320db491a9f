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
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/firehose/firehose/app/codecs"
	"github.com/firehose/firehose/app/metrics"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/connectors/iceberg"
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
	// kafkaclient.DefaultShutdownTimeout): each connector's flush and commits,
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

// Run builds the process, then runs it until ctx ends, drains and
// returns. Everything (the processor, every sink and worker, the pull API,
// the listeners) is built and checked before the first goroutine starts:
// a build error returns with nothing running and everything opened
// closed. Run returns the first component error; the others are stopped.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p, err := build(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer p.close()
	return p.run(ctx)
}

// A process is what Run runs, built before any of it starts.
type process struct {
	cfg   *config.Config
	o     Options
	m     *metrics.Set
	kopts []kgo.Opt
	cs    *codecs.Codecs

	// tasks run in their own goroutines, owned by run's errgroup.
	tasks   []func(context.Context) error
	readies []func() bool
	beats   []*heartbeat.Beat
	groups  []string
	// sinks report a destination that holds deliveries (an Iceberg
	// catalog that does not answer).
	sinks []func() error
	addr  string // the API listener's, for OnReady

	// undo releases what build opened when a later step fails: nothing
	// of it ever ran. closers run when the process is done.
	undo, closers []func()
}

// build constructs and checks every part of the process; it starts no
// goroutine of its own. On error it undoes what it opened.
func build(ctx context.Context, cfg *config.Config, o Options) (_ *process, err error) {
	for _, name := range o.Connectors {
		if !slices.ContainsFunc(cfg.Connectors, func(c connectors.Config) bool { return c.Name == name }) {
			return nil, fmt.Errorf("--connector %s: no connector of that name in the config", name)
		}
	}
	p := &process{cfg: cfg, o: o, m: o.Metrics}
	if p.m == nil {
		p.m = metrics.New()
	}
	defer func() {
		if err != nil {
			slices.Reverse(p.undo)
			for _, f := range p.undo {
				f()
			}
			p.close()
		}
	}()
	if p.kopts, err = kafkaclient.Options(cfg.Kafka, o.Log); err != nil {
		return nil, err
	}
	stopTracing, err := tracing.Setup(ctx, cfg.Tracing)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() {
		// Flush the last spans, briefly: a collector that is down must
		// not hold the stop.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			o.Log.Warn("tracing: last spans not exported", "err", err)
		}
	})
	var writes []string
	if p.runsProcessor() {
		writes = append(writes, codecs.WriteEvents)
	}
	if p.cs, err = codecs.Open(ctx, cfg, o.Log, writes...); err != nil {
		return nil, err
	}
	if err := p.buildProcessor(); err != nil {
		return nil, err
	}
	if err := p.buildConnectors(ctx); err != nil {
		return nil, err
	}
	if err := p.buildHTTP(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *process) runsProcessor() bool { return p.o.has(RoleProcessor) && p.cfg.Processor.IsEnabled() }

func (p *process) buildProcessor() error {
	if !p.runsProcessor() {
		return nil
	}
	cfg := p.cfg
	beat := heartbeat.New("the processor")
	pr, err := processor.New(processor.Options{
		Config: cfg.Processor, Topology: cfg.Topology, Kafka: p.kopts, Beat: beat,
		In: p.cs.RawReader, Out: p.cs.EventsWriter,
		ClientOpts: append(kafkaclient.GroupOptions(cfg.Kafka, "processor"), p.m.KafkaHooks("processor")),
		Log:        p.o.Log, ShutdownTimeout: p.o.ShutdownTimeout,
	})
	if err != nil {
		return err
	}
	p.m.Processor(pr.Stats())
	p.beats = append(p.beats, beat)
	p.groups = append(p.groups, cfg.Processor.Group)
	p.readies = append(p.readies, pr.Ready)
	p.tasks = append(p.tasks, pr.Run)
	return nil
}

func (p *process) buildConnectors(ctx context.Context) error {
	if !p.o.has(RoleConnector) {
		return nil
	}
	cfg := p.cfg
	for _, c := range cfg.Connectors {
		if !c.IsEnabled() || c.NotRun || (len(p.o.Connectors) > 0 && !slices.Contains(p.o.Connectors, c.Name)) {
			continue
		}
		sink, err := destinations.NewSink(ctx, c)
		if err != nil {
			return err
		}
		p.undo = append(p.undo, func() { _ = sink.Close(context.WithoutCancel(ctx)) })
		beat := heartbeat.New("connector " + c.Name)
		opts := connectors.Options{
			Connector:       c,
			DLQTopic:        cfg.Topology.DLQ.Name,
			DLQMaxBytes:     cfg.Topology.DLQ.MaxRecordBytes(),
			EventsEncoding:  cfg.Topology.Events.Encoding,
			Codec:           p.cs.EventsReader,
			Sink:            sink,
			Kafka:           append(append(slices.Clip(p.kopts), kafkaclient.GroupOptions(cfg.Kafka, c.Name)...), p.m.KafkaHooks(dlq.ConnectorStage(c.Name))),
			Log:             p.o.Log,
			ShutdownTimeout: p.o.ShutdownTimeout,
			RevokeTimeout:   cfg.Kafka.RebalanceTimeout / 2,
			Beat:            beat,
			Observer:        p.m.Observer(c.Name),
		}
		w, err := connectors.New(opts)
		if err != nil {
			return fmt.Errorf("connector %s: %w", c.Name, err)
		}
		// Replay jobs of the connector run beside it (see Replay in the
		// README), on the same sink.
		// Without the metrics hooks: they register one client's
		// metrics, the live worker's.
		replays, err := w.Replays(append(slices.Clip(p.kopts), kafkaclient.GroupOptions(cfg.Kafka, c.Name)...))
		if err != nil {
			return fmt.Errorf("connector %s: %w", c.Name, err)
		}
		p.m.Connector(c.Name, w.Stats())
		if h, ok := sink.(interface{ Health() error }); ok {
			p.sinks = append(p.sinks, h.Health)
		}
		if t, ok := sink.(*iceberg.Sink); ok {
			p.m.Iceberg(c.Name, t.Stats())
		}
		p.beats = append(p.beats, beat)
		p.groups = append(p.groups, c.Group)
		p.readies = append(p.readies, w.Ready)
		p.tasks = append(p.tasks, func(ctx context.Context) error {
			defer sink.Close(context.WithoutCancel(ctx))
			rctx, stop := context.WithCancel(ctx)
			replaysDone := make(chan struct{})
			go func() {
				defer close(replaysDone)
				_ = replays.Run(rctx)
			}()
			err := w.Run(ctx)
			stop()
			<-replaysDone
			return err
		})
	}
	return nil
}

// buildHTTP builds the pull API, the groups' watchdog and the listeners,
// binding their addresses.
func (p *process) buildHTTP() error {
	cfg, o := p.cfg, p.o
	var pull *pullapi.Server
	if o.has(RoleAPI) && cfg.API.Listen != "off" && (cfg.API.PullEnabled() || o.DevTokens) {
		var codec schemas.Codec // json and avro: the server's own reading
		if schemas.IsConfluent(cfg.Topology.Events.Encoding) {
			codec = p.cs.EventsReader
		}
		var err error
		if pull, err = newPullAPI(cfg, o, p.kopts, codec, p.m.PullRequest); err != nil {
			return err
		}
		p.m.PullWindow(pull.Stats)
		p.undo = append(p.undo, pull.Close)
		p.tasks = append(p.tasks, pull.Run)
	}
	health, err := p.health()
	if err != nil {
		return err
	}
	ready := func() bool {
		for _, r := range p.readies {
			if !r() {
				return false
			}
		}
		return true
	}
	separateAdmin := cfg.API.AdminListen != "" && cfg.API.AdminListen != "off"
	if cfg.API.Listen != "off" {
		srv, err := p.listen(cfg.API.Listen, ready, health)
		if err != nil {
			return err
		}
		if pull != nil {
			pull.Register(srv.Mux)
		}
		if !separateAdmin {
			p.admin(srv.Mux)
		}
		p.addr = srv.Addr()
	}
	if separateAdmin {
		srv, err := p.listen(cfg.API.AdminListen, ready, health)
		if err != nil {
			return fmt.Errorf("api.admin_listen: %w", err)
		}
		p.admin(srv.Mux)
		o.Log.Info("admin listener", "addr", srv.Addr())
		if o.OnAdmin != nil {
			o.OnAdmin(srv.Addr())
		}
	}
	return nil
}

// listen binds addr for a server served as one of the tasks.
func (p *process) listen(addr string, ready func() bool, health func() error) (*httpserver.Server, error) {
	srv, err := httpserver.Listen(addr, ready, health, p.o.Log)
	if err != nil {
		return nil, err
	}
	srv.Limits.MaxConnectionsPerClient = p.cfg.API.MaxConnectionsPerClient
	p.undo = append(p.undo, func() { _ = srv.Close() })
	p.tasks = append(p.tasks, srv.Serve)
	return srv, nil
}

// health builds what /healthz asks: the loops' heartbeats and, through
// one admin client, whether the process's groups make progress (and
// their lag at scrape time).
func (p *process) health() (func() error, error) {
	cfg := p.cfg
	var groupsHealth func() error
	if len(p.groups) > 0 {
		groupsClient, err := kgo.NewClient(p.kopts...)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, groupsClient.Close)
		wd := newGroupWatchdog(kadm.NewClient(groupsClient), p.groups, cfg.Kafka.SessionTimeout+cfg.Kafka.RebalanceTimeout, p.o.Log)
		groupsHealth = wd.Health
		p.tasks = append(p.tasks, wd.Run)
		if cfg.API.Listen != "off" || (cfg.API.AdminListen != "" && cfg.API.AdminListen != "off") {
			p.m.Lag(groupsClient, p.groups, p.o.Log)
		}
	}
	if len(p.beats) == 0 && len(p.sinks) == 0 {
		return groupsHealth, nil
	}
	return func() error {
		if err := heartbeat.Check(p.beats, cfg.API.StallTimeout, time.Now()); err != nil {
			return err
		}
		for _, h := range p.sinks {
			if err := h(); err != nil {
				return err
			}
		}
		if groupsHealth != nil {
			return groupsHealth()
		}
		return nil
	}, nil
}

// admin registers the operators' endpoints, metrics and profiles, on the
// admin listener when there is one, else on the API's.
func (p *process) admin(mux *http.ServeMux) {
	mux.Handle("GET /metrics", p.m.Handler())
	if p.cfg.API.Pprof {
		// Profiles of CPU, heap, goroutines and blocking, for a listener
		// that is not public (api.pprof documents it).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// run starts every task, each in a goroutine of one errgroup, and waits
// for them: until ctx ends or one fails, then for the others to stop.
func (p *process) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range p.tasks {
		g.Go(func() error { return t(gctx) })
	}
	if p.o.OnReady != nil {
		g.Go(func() error { return p.whenReady(gctx) })
	}
	err := waitBounded(gctx, g.Wait, p.o.ShutdownTimeout, p.o.Log)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// whenReady calls OnReady once every component has its partitions.
func (p *process) whenReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if slices.ContainsFunc(p.readies, func(r func() bool) bool { return !r() }) {
				continue
			}
			p.o.OnReady(p.addr)
			return nil
		}
	}
}

// close runs the closers, newest first.
func (p *process) close() {
	slices.Reverse(p.closers)
	for _, f := range p.closers {
		f()
	}
	p.closers = nil
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
		timeout = kafkaclient.DefaultShutdownTimeout
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
		Kafka:       kopts,
		Topic:       cfg.Topology.Events.Name,
		Encoding:    cfg.Topology.Events.Encoding,
		Codec:       codec,
		Signer:      signer,
		Tokens:      tokens,
		Log:         o.Log,
		Limits:      pullapi.Limits{PerToken: cfg.API.MaxRequestsPerToken, Total: cfg.API.MaxRequests},
		WindowBytes: int(cfg.API.WindowBytes),
		OnRequest:   onRequest,
	})
}
