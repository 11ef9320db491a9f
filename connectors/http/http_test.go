package http

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
)

// receiver is a webhook endpoint that keeps the last body per batch id and
// checks what every request must carry.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	bodies map[string][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("Idempotency-Key")
	mac := hmac.New(sha256.New, []byte("0123456789abcdef-secret"))
	mac.Write(body)
	switch {
	case r.Method != http.MethodPost, r.Header.Get("Authorization") != "Bearer tok", r.Header.Get("X-Tenant") != "acme":
		http.Error(w, "bad request line or headers", http.StatusBadRequest)
		return
	case id == "" || r.Header.Get("X-Firehose-Batch-Id") != id:
		http.Error(w, "no idempotency key", http.StatusBadRequest)
		return
	case r.Header.Get("X-Firehose-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)):
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.bodies[id] = body
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func newSink(url string) *Sink {
	cfg := Config{URL: url, BearerToken: "tok", Headers: map[string]string{"X-Tenant": "acme"}, Signature: Signature{Secret: "0123456789abcdef-secret"}}
	cfg.Defaults()
	return New(cfg)
}

func TestConformance(t *testing.T) {
	rc := &receiver{t: t, bodies: map[string][]byte{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	connectortest.Run(t, connectortest.Target{
		New: func(*testing.T) connectors.Sink { return newSink(srv.URL) },
		Fetch: func(t *testing.T, b *connectors.Batch) []byte {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			body, ok := rc.bodies[b.ID]
			if !ok {
				t.Fatalf("no request for batch %s", b.ID)
			}
			return body
		},
	})
}

func TestClassify(t *testing.T) {
	b := connectortest.MakeBatch(t, 0, 0, connectortest.Events(1, 2), "ndjson", "none")
	for _, c := range []struct {
		status    int
		header    string
		ok, perm  bool
		wantAfter time.Duration
	}{
		{200, "", true, false, 0},
		{204, "", true, false, 0},
		{500, "", false, false, 0},
		{503, "7", false, false, 7 * time.Second},
		{429, "2", false, false, 2 * time.Second},
		{408, "", false, false, 0},
		{400, "", false, true, 0},
		{401, "", false, true, 0},
		{404, "", false, true, 0},
		{301, "", false, true, 0},
	} {
		t.Run(fmt.Sprintf("%d %s", c.status, c.header), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if c.header != "" {
					w.Header().Set("Retry-After", c.header)
				}
				if c.status == 301 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte("reason"))
			}))
			err := newSink(srv.URL).Deliver(context.Background(), b)
			srv.Close()
			if (err == nil) != c.ok || connectors.IsPermanent(err) != c.perm {
				t.Errorf("status %d: err %v, permanent %v", c.status, err, connectors.IsPermanent(err))
			}
			if got := connectors.RetryAfter(err); got != c.wantAfter {
				t.Errorf("status %d: retry after %s, want %s", c.status, got, c.wantAfter)
			}
		})
	}
	// A dead endpoint is retryable.
	err := newSink("http://127.0.0.1:1").Deliver(context.Background(), b)
	if err == nil || connectors.IsPermanent(err) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 15, 14, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"-3":                            0,
		"99999":                         10 * time.Minute,
		"Mon, 15 Jan 2024 14:00:30 GMT": 30 * time.Second,
		"soon":                          0,
	} {
		t.Run(in, func(t *testing.T) {
			if got := ParseRetryAfter(in, now); got != want {
				t.Errorf("%q: %s, want %s", in, got, want)
			}
		})
	}
}

// A receiver that echoes the request (its URL and headers) in an error,
// and a connection error that quotes the URL, leave no secret in the error
// the runtime logs, nor in the response it keeps for the dead letter.
func TestSecretsStayOutOfErrorsAndDeadLetters(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, "rejected %s %s\n", r.Method, r.URL.String())
		for k, v := range r.Header {
			_, _ = fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, ","))
		}
		if u, p, ok := r.BasicAuth(); ok {
			_, _ = fmt.Fprintf(w, "basic %s:%s\n", u, p)
		}
	}))
	defer echo.Close()
	secrets := []string{"hunter2-password", "sk_live_querykey", "bearer-token-123", "x-api-key-value", "0123456789abcdef-secret", "webhook-user"}
	for _, base := range []string{echo.URL, "http://127.0.0.1:1"} {
		raw := strings.Replace(base, "http://", "http://webhook-user:hunter2-password@", 1) + "/in?api_key=sk_live_querykey&tenant=acme"
		cfg := Config{URL: raw, BearerToken: "bearer-token-123", Headers: map[string]string{"X-Api-Key": "x-api-key-value"}, Signature: Signature{Secret: "0123456789abcdef-secret"}}
		cfg.Defaults()
		s := New(cfg)
		evs := connectortest.EventsOver(3, 2, 4)
		err := s.Deliver(context.Background(), connectortest.MakeBatch(t, 0, 0, evs, "ndjson", "none"))
		if err == nil {
			t.Fatal("delivered")
		}
		kept := err.Error() + "\n" + connectors.ResponseOf(err)
		for _, secret := range secrets {
			if strings.Contains(kept, secret) {
				t.Errorf("%s leaks %q:\n%s", base, secret, kept)
			}
		}
		if !strings.Contains(kept, "REDACTED") {
			t.Errorf("nothing redacted in:\n%s", kept)
		}
	}
}

func TestRedactURL(t *testing.T) {
	got := RedactURL("https://user:pass@hooks.example.com/in?api_key=abc&x=1#frag")
	if got != "https://REDACTED@hooks.example.com/in?api_key=REDACTED&x=REDACTED" {
		t.Fatal(got)
	}
}

// A webhook request carries the trace context of its batch's first event
// that has one, so the receiver's span joins the producer's trace.
func TestWebhookCarriesTraceparent(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("traceparent")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := Config{URL: srv.URL}
	cfg.Defaults()
	b := connectortest.MakeBatch(t, 0, 0, connectortest.EventsOver(7, 2, 3), "ndjson", "none")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.Records[1].Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}
	if err := New(cfg).Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got != tp {
		t.Fatalf("traceparent %q", got)
	}
}

// A producer's trace headers that are not W3C trace context (a CR/LF
// that would split the request's headers, a 70 KB tracestate) never reach
// a request, and the batch is delivered.
func TestWebhookLeavesOutInvalidTraceContext(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := Config{URL: srv.URL}
	cfg.Defaults()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for name, hs := range map[string][]kgo.RecordHeader{
		"CR LF in traceparent": {{Key: "traceparent", Value: []byte(tp + "\r\nX-Injected: 1")}},
		"70 KB tracestate":     {{Key: "traceparent", Value: []byte(tp)}, {Key: "tracestate", Value: bytes.Repeat([]byte("a=b,"), 70<<8)}},
		"not trace context":    {{Key: "traceparent", Value: []byte("00-zz")}},
	} {
		b := connectortest.MakeBatch(t, 0, 0, connectortest.EventsOver(3, 1, 3), "ndjson", "none")
		b.Records[0].Headers = hs
		if err := New(cfg).Deliver(context.Background(), b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Get("X-Injected") != "" || got.Get("tracestate") != "" || (got.Get("traceparent") != "" && got.Get("traceparent") != tp) {
			t.Fatalf("%s: request headers %v", name, got)
		}
	}
}

// A receiver that echoes the request (its Authorization header, its URL as
// JSON with "\/" for "/") never puts the connector's secrets into errors,
// logs or dead letters, nor the first part of one astride the response's
// cut.
func TestEchoedSecretsAreRedacted(t *testing.T) {
	const pass, token = "s3cretpass99", "tok3nvalue77"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := json.Marshal("http://user:" + pass + "@" + r.Host + r.URL.String())
		echo := fmt.Sprintf(`{"auth":%q,"url":%s}`, r.Header.Get("Authorization"), strings.ReplaceAll(string(u), "/", `\/`))
		// Then the password again, astride the 4096 bytes kept.
		pad := strings.Repeat(" ", maxResponse-len(echo)-len(pass)/2)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(echo + pad + pass))
	}))
	defer srv.Close()
	cfg := Config{URL: strings.Replace(srv.URL, "http://", "http://user:"+pass+"@", 1) + "/in?token=" + token}
	cfg.Defaults()
	b := connectortest.MakeBatch(t, 0, 0, connectortest.EventsOver(2, 1, 2), "ndjson", "none")
	err := New(cfg).Deliver(context.Background(), b)
	if err == nil {
		t.Fatal("a 400 was taken for delivery")
	}
	msg := err.Error()
	basic := base64.StdEncoding.EncodeToString([]byte("user:" + pass))
	for _, secret := range []string{pass, pass[:len(pass)/2], token, basic} {
		if strings.Contains(msg, secret) {
			t.Fatalf("the error holds %q: %s", secret, msg)
		}
	}
	if !strings.Contains(msg, Redacted) {
		t.Fatalf("nothing redacted: %s", msg)
	}
}

// A URL without a scheme is refused without being echoed: user:token@host
// does not parse as credentials there, and would be printed whole.
func TestInvalidURLIsNotEchoed(t *testing.T) {
	cfg := Config{URL: "user:tok3nsecret@hooks.example.com/in"}
	cfg.Defaults()
	err := cfg.Validate()
	if err == nil || strings.Contains(err.Error(), "tok3nsecret") {
		t.Fatalf("%v", err)
	}
}
