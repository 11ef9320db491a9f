package httpserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, l Limits) string {
	t.Helper()
	s, err := Listen("127.0.0.1:0", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	})
	s.Limits = l
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.Addr()
}

// A client that sends its body a byte at a time is cut off by the read
// timeout instead of holding its connection for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c) // returns when the server closes the connection
		close(closed)
	}()
	for range 600 { // a byte every 100 ms: a minute, if nothing cut it off
		select {
		case <-closed:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.Write([]byte("x")); err != nil {
			return
		}
	}
	t.Fatal("a body trickling a byte every 100 ms was still being read after a minute")
}

// Headers over the limit are refused with 431.
func TestHugeHeadersAreRefused(t *testing.T) {
	addr := serve(t, Limits{MaxHeaderBytes: 4 << 10})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// Past MaxConnections a new connection is not served until one closes.
func TestConnectionsAreCapped(t *testing.T) {
	addr := serve(t, Limits{MaxConnections: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A served keep-alive connection, left open and idle.
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	third := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := third.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served while two were open")
	}
	held[0].Close()
	ok := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := ok.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("not served after a connection closed: %v", err)
	}
	resp.Body.Close()
}

// One client that opens more connections than the listener takes cannot
// leave another client's probe waiting: past its own cap, its new
// connections are closed at once.
func TestOneClientCannotStarveProbes(t *testing.T) {
	addr := serve(t, Limits{MaxConnections: 20, MaxConnectionsPerClient: 8})
	flooder := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	held := 0
	for range 30 {
		c, err := flooder.Dial("tcp", addr)
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2: %v", err)
		}
		defer c.Close()
		// A slow client: a request that never ends.
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\n"); err == nil {
			held++
		}
	}
	if held < 21 {
		t.Fatalf("only %d connections written to", held)
	}
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		resp, err := probe.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("a probe from another client while one holds 30 connections: %v", err)
		}
		resp.Body.Close()
	}
}
