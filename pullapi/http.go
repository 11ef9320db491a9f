package pullapi

// The HTTP side of the pull API: admission (per-token and total limits),
// errors as JSON, and one request from its parameters to its page.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/firehose/firehose/schemas"
)

// apiError is an error with its HTTP status and a stable code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := http.StatusOK
	if s.o.OnRequest != nil {
		defer func() { s.o.OnRequest(status, time.Since(start)) }()
	}
	fail := func(ae *apiError) {
		status = ae.status
		writeError(w, ae)
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	account, known := s.o.Tokens.Account(token)
	if !ok || !known {
		fail(errorf(http.StatusUnauthorized, "unauthorized", "send a valid token as Authorization: Bearer <token>"))
		return
	}
	if ae := s.acquire(token); ae != nil {
		w.Header().Set("Retry-After", "1")
		fail(ae)
		return
	}
	defer s.release(token)
	page, err := s.serve(r, account, start)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			s.failLog.Warn("pull API request failed", "err", err)
			ae = errorf(http.StatusServiceUnavailable, "unavailable", "the stream cannot be read right now; retry the same position")
		}
		fail(ae)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="firehose"`)
	}
	w.WriteHeader(e.status)
	b := []byte(`{"error":{"status":`)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"code":`...)
	b = schemas.AppendString(b, e.code)
	b = append(b, `,"message":`...)
	b = schemas.AppendString(b, e.msg)
	b = append(b, "}}\n"...)
	_, _ = w.Write(b)
}

// acquire takes a place for one request of token, or says why there is
// none.
func (s *Server) acquire(token string) *apiError {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight[token] >= s.o.Limits.PerToken {
		return errorf(http.StatusTooManyRequests, "too_many_requests", "this token has %d requests in flight, its limit; wait for an answer before asking again", s.o.Limits.PerToken)
	}
	if s.total >= s.o.Limits.Total {
		return errorf(http.StatusTooManyRequests, "too_many_requests", "the server is answering %d requests, its limit; retry in a second", s.o.Limits.Total)
	}
	s.inFlight[token]++
	s.total++
	return nil
}

func (s *Server) release(token string) {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight[token]--; s.inFlight[token] <= 0 {
		delete(s.inFlight, token)
	}
	s.total--
}

func (s *Server) serve(r *http.Request, account string, start time.Time) ([]byte, error) {
	q := r.URL.Query()
	limit := DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return nil, errorf(http.StatusBadRequest, "invalid_limit", "limit must be a whole number from 1 to %d, got %q", MaxLimit, v)
		}
		limit = n
	}
	pos := q.Get("position")
	if pos == "" {
		return nil, errorf(http.StatusBadRequest, "invalid_position", "position is required: tail (the oldest retained event), top (from now on) or the position of an earlier answer")
	}
	// ctx bounds every read; soft is when no new read starts.
	soft := start.Add(s.o.Budget)
	ctx, cancel := context.WithDeadline(r.Context(), start.Add(max(readDeadline, s.o.Budget)))
	defer cancel()
	m, err := s.metadata(ctx, false)
	if err != nil {
		return nil, err
	}
	offsets, err := s.resolve(ctx, account, pos, m)
	if err != nil {
		return nil, err
	}
	page, err := s.scan(ctx, soft, account, offsets, limit)
	if errors.Is(err, errExpired) && pos == "tail" {
		// The shared start offsets were listed before retention moved
		// them: tail never expires, so list them afresh.
		s.listMu.Lock()
		delete(s.listed, "tail")
		s.listMu.Unlock()
		if offsets, err = s.resolve(ctx, account, pos, m); err != nil {
			return nil, err
		}
		page, err = s.scan(ctx, soft, account, offsets, limit)
	}
	return page, err
}
