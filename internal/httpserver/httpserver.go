// Package httpserver is the one HTTP listener of a Firehose process: health
// and readiness now, and the pull API and metrics as they are mounted.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server serves a mux on one address until its context ends.
type Server struct {
	Mux  *http.ServeMux
	addr string
	log  *slog.Logger
	ln   net.Listener
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
		_, _ = w.Write([]byte("ready\n"))
	})
	return &Server{Mux: mux, addr: ln.Addr().String(), log: log, ln: ln}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.addr }

// Serve serves until ctx ends, then shuts down within five seconds.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{Handler: s.Mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
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
