package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/testsupport/wait"
)

// syncBuffer is a bytes.Buffer safe for the banner's writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// firehose dev with real tokens configured does not also accept
// dev-<account> tokens, which would open every account to anyone; and it
// keeps its data dir (raw, unmasked events) to its owner.
func TestDevTokensAreOffBesideRealOnes(t *testing.T) {
	dir := t.TempDir() + "/data"
	var out syncBuffer
	cfg := []byte(`
kafka: {brokers: ["${FIREHOSE_BROKER}"]}
api:
  listen: 127.0.0.1:0
  position_key: 0123456789abcdef0123456789abcdef
  tokens:
    - {account: acc_1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Dev(ctx, DevOptions{DataDir: dir, BrokerPort: -1, Config: cfg, ConfigName: "test.yaml", Out: &out, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	defer func() { cancel(); <-done }()
	re := regexp.MustCompile(`Health +http://([0-9.:]+)/healthz`)
	var addr string
	wait.Eventually(t, time.Minute, "the ready banner", func() bool {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/stream?position=tail", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("dev-acc_1"); code != http.StatusUnauthorized {
		t.Fatalf("dev-acc_1 beside real tokens: %d", code)
	}
	if code := get("test"); code != http.StatusOK { // the configured token (SHA-256 of "test")
		t.Fatalf("the configured token: %d", code)
	}
	if st, err := statMode(dir); err != nil || st != 0o700 {
		t.Fatalf("data dir mode %v (%v)", st, err)
	}
}

func statMode(path string) (uint32, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return uint32(st.Mode().Perm()), nil
}
