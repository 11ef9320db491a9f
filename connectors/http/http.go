// Package http is the webhook destination: each batch is one HTTP request
// whose body is the encoded (and optionally compressed) batch. 2xx
// acknowledges; 408, 429 and 5xx are retried, honouring Retry-After; any
// other status is a permanent rejection and the batch goes to the DLQ with
// the response.
package http

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/tracing"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the http section of a connector. Header values and secrets
// take ${VAR} from the environment like any config value.
type Config struct {
	URL     string            `yaml:"url"`     // required, http or https
	Method  string            `yaml:"method"`  // POST (default) or PUT
	Headers map[string]string `yaml:"headers"` // added to every request
	// BearerToken, if set, is sent as Authorization: Bearer <token>.
	BearerToken string `yaml:"bearer_token"`
	// IdempotencyHeader carries the batch id, stable across retries, so
	// the receiver can drop a batch it already has. Default
	// Idempotency-Key.
	IdempotencyHeader string `yaml:"idempotency_header"`
	// Signature, if its secret is set, signs the body:
	// <header>: sha256=<hex HMAC-SHA-256 of the body under secret>.
	Signature Signature `yaml:"signature"`
	// Timeout bounds one request; default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// Signature configures the body signature.
type Signature struct {
	Secret string `yaml:"secret"` // e.g. ${WEBHOOK_SECRET}
	Header string `yaml:"header"` // default X-Firehose-Signature
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	if c.IdempotencyHeader == "" {
		c.IdempotencyHeader = "Idempotency-Key"
	}
	if c.Signature.Header == "" {
		c.Signature.Header = "X-Firehose-Signature"
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, yamlconf.Errorf("url", "required"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		// Not echoed: without a scheme, user:token@host parses as
		// something else, and the secret would be printed whole.
		errs = append(errs, yamlconf.Errorf("url", "must be an http:// or https:// URL with a host (the value is not shown: it may hold a secret)"))
	}
	if c.Method != http.MethodPost && c.Method != http.MethodPut {
		errs = append(errs, yamlconf.Errorf("method", "must be POST or PUT, got %q", c.Method))
	}
	if c.Timeout < 0 {
		errs = append(errs, yamlconf.Errorf("timeout", "must be positive"))
	}
	if c.Signature.Secret != "" && len(c.Signature.Secret) < 16 {
		errs = append(errs, yamlconf.Errorf("signature.secret", "must be at least 16 bytes"))
	}
	return errors.Join(errs...)
}

// Sink posts batches to a URL.
type Sink struct {
	cfg    Config
	client *http.Client
	// target is the URL as errors show it, its secrets redacted.
	target string
	// redact replaces every secret of the config (URL credentials and
	// query values, bearer token, signature secret, header values) in
	// what errors and dead letters keep: a receiver may echo a request.
	redact *strings.Replacer
	// longest is the longest secret's length.
	longest int
}

// New returns a webhook sink. Redirects are not followed: a webhook that
// moved is a configuration error to see, not to guess around.
func New(cfg Config) *Sink {
	redact, longest := secretReplacer(cfg)
	return &Sink{cfg: cfg, target: RedactURL(cfg.URL), redact: redact, longest: longest, client: &http.Client{
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Redacted is what stands for a secret in errors and dead letters.
const Redacted = "REDACTED"

// RedactURL returns raw with its user information and the values of its
// query replaced by REDACTED, for logs and dead letters:
// https://REDACTED@hooks.example.com/in?api_key=REDACTED.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redacted
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{Redacted}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment = ""
	return u.String()
}

// secretReplacer replaces the secrets of cfg, longest first. Values
// shorter than six bytes are left alone: they would redact ordinary words
// and protect little.
func secretReplacer(cfg Config) (*strings.Replacer, int) {
	secrets := []string{cfg.URL, cfg.BearerToken, cfg.Signature.Secret}
	if u, err := url.Parse(cfg.URL); err == nil {
		secrets = append(secrets, u.User.String(), u.User.Username(), u.RawQuery)
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p, url.QueryEscape(p),
				// the Authorization header Go sends for them
				base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)))
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				secrets = append(secrets, v, url.QueryEscape(v))
			}
		}
	}
	for _, v := range cfg.Headers {
		secrets = append(secrets, v)
		// A Basic credential's user:password, decoded.
		if b, ok := strings.CutPrefix(v, "Basic "); ok {
			if plain, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b)); err == nil {
				secrets = append(secrets, string(plain))
			}
		}
	}
	// A receiver that echoes the request as JSON escapes them: "\/" for
	// "/", \u0026 for "&", and so on.
	for _, s := range secrets {
		if j, err := json.Marshal(s); err == nil {
			secrets = append(secrets, string(j[1:len(j)-1]), strings.ReplaceAll(string(j[1:len(j)-1]), "/", `\/`))
		}
	}
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return len(s) < 6 })
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	longest := 0
	for _, s := range slices.Compact(secrets) {
		pairs = append(pairs, s, Redacted)
		longest = max(longest, len(s))
	}
	return strings.NewReplacer(pairs...), longest
}

// maxResponse bounds how much of an error response is kept for the DLQ.
const maxResponse = 4096

// Deliver implements connectors.Sink.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	req, err := http.NewRequestWithContext(ctx, s.cfg.Method, s.cfg.URL, bytes.NewReader(b.Body))
	if err != nil {
		return connectors.Permanent(err, "")
	}
	h := req.Header
	for k, v := range s.cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", b.ContentType)
	if b.ContentEncoding != "" {
		h.Set("Content-Encoding", b.ContentEncoding)
	}
	h.Set(s.cfg.IdempotencyHeader, b.ID)
	h.Set("X-Firehose-Batch-Id", b.ID)
	h.Set("X-Firehose-Connector", b.Connector)
	h.Set("X-Firehose-Event-Count", strconv.Itoa(b.Len()))
	if b.Replay != "" {
		h.Set("X-Firehose-Replay", b.Replay)
	}
	if s.cfg.BearerToken != "" {
		h.Set("Authorization", "Bearer "+s.cfg.BearerToken)
	}
	if s.cfg.Signature.Secret != "" {
		mac := hmac.New(sha256.New, []byte(s.cfg.Signature.Secret))
		mac.Write(b.Body)
		h.Set(s.cfg.Signature.Header, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	// One request carries many events and can have one parent: the
	// delivery's span when tracing is on, else the trace context of the
	// batch's first event that has one.
	if tracing.Enabled() {
		tracing.Propagator().Inject(ctx, propagation.HeaderCarrier(h))
	} else {
		s.firstTraceContext(b, h)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The client's error quotes the URL: keep only its redacted form,
		// and its class.
		class := connectors.ClassConnection
		if connectors.FailureOf(err).Class == connectors.ClassTimeout {
			class = connectors.ClassTimeout
		}
		return connectors.Describe(connectors.Retryable(fmt.Errorf("deliver batch %s to %s: %s", b.ID, s.target, s.redact.Replace(err.Error())), 0), 0, "", class)
	}
	defer resp.Body.Close()
	// Read past what is kept, redact, then cut: a secret astride the
	// cut would otherwise keep its first part.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, int64(maxResponse+s.longest)))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	kept := []byte(s.redact.Replace(string(body)))
	if len(kept) > maxResponse {
		kept = kept[:maxResponse]
	}
	return Classify(resp.StatusCode, resp.Header.Get("Retry-After"), kept, b.ID, s.target)
}

// firstTraceContext sets traceparent (and tracestate) from the first event
// of b that has a valid one. A producer's headers are its own: one that
// is not W3C trace context (a CR or LF, 70 KB of tracestate) never reaches
// a request, where it would fail the whole batch, other accounts' events
// included.
func (*Sink) firstTraceContext(b *connectors.Batch, h http.Header) {
	for i := range b.Records {
		hs := connectors.EventHeaders(b, i)
		if tp := headerOf(hs, tracing.HeaderTraceparent); tp != "" && tracing.ValidTraceparent([]byte(tp)) {
			h.Set(tracing.HeaderTraceparent, tp)
			if ts := headerOf(hs, tracing.HeaderTracestate); ts != "" && tracing.ValidTracestate([]byte(ts)) {
				h.Set(tracing.HeaderTracestate, ts)
			}
			break
		}
	}
}

func headerOf(hs []kgo.RecordHeader, key string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// Classify turns a response into nil (2xx), a retryable error (408, 429,
// 5xx) or a permanent one (anything else).
func Classify(status int, retryAfter string, body []byte, batch, target string) error {
	if status >= 200 && status < 300 {
		return nil
	}
	resp := fmt.Sprintf("HTTP %d: %s", status, body)
	err := fmt.Errorf("deliver batch %s to %s: %s", batch, target, resp)
	if status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500 {
		return connectors.Describe(connectors.Retryable(err, ParseRetryAfter(retryAfter, time.Now())), status, "", "")
	}
	return connectors.Describe(connectors.Permanent(err, resp), status, "", "")
}

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. It returns 0 when absent or unreadable, and at most ten minutes.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 10*time.Minute)
}

// Close implements connectors.Sink.
func (s *Sink) Close(context.Context) error {
	s.client.CloseIdleConnections()
	return nil
}
