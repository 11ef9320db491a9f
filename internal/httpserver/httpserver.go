// Package httpserver is the one HTTP listener of a Firehose process: health
// and readiness now, and the pull API and metrics as they are mounted.
package httpserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Limits bound what one client can hold of the listener. Zero fields take
// the defaults in DefaultLimits.
type Limits struct {
	// ReadHeaderTimeout and ReadTimeout bound reading a request's headers
	// and the whole request: a client sending a byte every few seconds is
	// cut off.
	ReadHeaderTimeout, ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer (a pull API answer comes
	// within a second; a metrics scrape within a few).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle that long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers; larger ones get 431.
	MaxHeaderBytes int
	// MaxConnections bounds open connections; past it new ones wait to
	// be accepted until one closes.
	MaxConnections int
	// MaxConnectionsPerClient bounds the open connections of one client
	// address; past it a new one is closed at once, so that one client
	// cannot hold every connection and leave probes waiting. Behind a
	// proxy every client has the proxy's address: raise it there.
	MaxConnectionsPerClient int
}

// DefaultLimits are the listener's limits unless a test sets others.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 5 * time.Second,
	ReadTimeout:       10 * time.Second,
	WriteTimeout:      15 * time.Second,
	IdleTimeout:       30 * time.Second,
	MaxHeaderBytes:    16 << 10,
	MaxConnections:    4096, // pull API followers each hold one
	// A quarter of MaxConnections: one client cannot take them all.
	MaxConnectionsPerClient: 1024,
}

func (l Limits) orDefaults() Limits {
	d := DefaultLimits
	return Limits{
		ReadHeaderTimeout:       cmp.Or(l.ReadHeaderTimeout, d.ReadHeaderTimeout),
		ReadTimeout:             cmp.Or(l.ReadTimeout, d.ReadTimeout),
		WriteTimeout:            cmp.Or(l.WriteTimeout, d.WriteTimeout),
		IdleTimeout:             cmp.Or(l.IdleTimeout, d.IdleTimeout),
		MaxHeaderBytes:          cmp.Or(max(l.MaxHeaderBytes, 0), d.MaxHeaderBytes),
		MaxConnections:          cmp.Or(max(l.MaxConnections, 0), d.MaxConnections),
		MaxConnectionsPerClient: cmp.Or(max(l.MaxConnectionsPerClient, 0), d.MaxConnectionsPerClient),
	}
}

// Server serves a mux on one address until its context ends.
type Server struct {
	Mux *http.ServeMux
	// Limits apply from Serve on; set them before.
	Limits Limits
	addr   string
	log    *slog.Logger
	ln     net.Listener
}

// Listen binds addr (host:port) so the caller learns of a busy port before
// anything else starts. ready reports readiness for /readyz; health, if
// not nil, reports why the process is unhealthy for /healthz (nil: healthy).
func Listen(addr string, ready func() bool, health func() error, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (api.listen): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: waiting for partition assignment\n"))
			return
		}
		// A group that makes no progress takes the process out of
		// service too, and back in once it recovers.
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return &Server{Mux: mux, addr: ln.Addr().String(), log: log, ln: ln}, nil
}

// perClient closes a new connection from a client address that already
// has max open.
type perClient struct {
	net.Listener
	max int
	log *slog.Logger

	mu      sync.Mutex
	open    map[string]int
	refused int
}

func (l *perClient) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[host] >= l.max {
			l.refused++
			first := l.refused == 1
			l.mu.Unlock()
			_ = c.Close()
			if first && l.log != nil {
				l.log.Warn("a client holds the most connections it may; closing its new ones", "client", host, "max", l.max)
			}
			continue
		}
		l.open[host]++
		l.mu.Unlock()
		return &clientConn{Conn: c, l: l, host: host}, nil
	}
}

type clientConn struct {
	net.Conn
	l    *perClient
	host string
	once sync.Once
}

func (c *clientConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.host]--; c.l.open[c.host] <= 0 {
			delete(c.l.open, c.host)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.addr }

// Serve serves until ctx ends, then shuts down within five seconds.
func (s *Server) Serve(ctx context.Context) error {
	l := s.Limits.orDefaults()
	srv := &http.Server{
		Handler:           s.Mux,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
	errc := make(chan error, 1)
	ln := &perClient{Listener: netutil.LimitListener(s.ln, l.MaxConnections), max: l.MaxConnectionsPerClient, open: map[string]int{}, log: s.log}
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Close releases the bound address of a server that will not Serve.
func (s *Server) Close() error { return s.ln.Close() }
