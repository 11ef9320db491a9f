package app_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/testsupport/configenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// scrape returns every sample of /metrics by its full name with labels,
// e.g. firehose_processor_events_total{result="in"}.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// startApp runs app.Run until ctx ends and returns its HTTP address once
// it is ready, and the channel its result comes on.
func startApp(t *testing.T, ctx context.Context, cfg *config.Config) (string, chan error) {
	t.Helper()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, app.Options{OnReady: func(a string) { addr <- a }}) }()
	select {
	case a := <-addr:
		return a, done
	case err := <-done:
		t.Fatalf("app stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("not ready after 60s")
	}
	return "", done
}

// TestMetricsCountTheWorkload sends a known mix through the processor and a
// file connector and checks that the counters and histogram counts say
// exactly what happened.
func TestMetricsCountTheWorkload(t *testing.T) {
	e := configenv.New(t, fmt.Sprintf(`api: {listen: "127.0.0.1:0"}
processor:
  filter: {exclude_event_types: ["debug.*"]}
connectors:
  - name: files
    type: file
    batch: {max_events: 100, max_age: 200ms}
    file: {dir: %q}
`, t.TempDir()), nil)
	cfg := e.Config
	cl := e.Client(kgo.DefaultProduceTopic(cfg.Topology.Raw.Name))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// 500 good events, 40 of them sent twice, 60 filtered, 7 bad.
	const good, dups, filtered, bad = 500, 40, 60, 7
	var recs []*kgo.Record
	ts := time.Now().UTC().Add(-2 * time.Second).Format(time.RFC3339Nano)
	event := func(i int, typ string) *kgo.Record {
		res := fmt.Sprintf("lead_%d", i%50)
		return &kgo.Record{Key: []byte(res), Value: fmt.Appendf(nil,
			`{"event_id":"e%d","timestamp":%q,"account_id":"acc_1","resource_id":%q,"sequence":%d,"event_type":%q,"lead_data":{"email":"ann@example.com"}}`,
			i, ts, res, i, typ)}
	}
	for i := range good {
		recs = append(recs, event(i, "lead.created"))
		if i < dups {
			recs = append(recs, event(i, "lead.created"))
		}
	}
	for i := range filtered {
		recs = append(recs, event(good+i, "debug.ping"))
	}
	for i := range bad {
		recs = append(recs, &kgo.Record{Key: []byte("x"), Value: fmt.Appendf(nil, "not json %d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	a, done := startApp(t, ctx, cfg)
	delivered := `firehose_connector_events_total{connector="files",result="delivered"}`
	wait.Eventually(t, 30*time.Second, fmt.Sprintf("%d events delivered", good), func() bool { return scrape(t, a)[delivered] >= good })
	wait.Consistently(t, 500*time.Millisecond, "no more events delivered", func() bool { return scrape(t, a)[delivered] == good })
	m := scrape(t, a)

	want := map[string]float64{
		`firehose_processor_events_total{result="in"}`:                         good + dups + filtered + bad,
		`firehose_processor_events_total{result="out"}`:                        good,
		`firehose_processor_events_total{result="filtered"}`:                   filtered,
		`firehose_processor_events_total{result="deduplicated"}`:               dups,
		`firehose_processor_events_total{result="dlq"}`:                        bad,
		`firehose_processor_masked_total`:                                      good, // every event has an email, masked by the default rules
		`firehose_processor_headers_dropped_total`:                             0,
		`firehose_connector_events_total{connector="files",result="consumed"}`: good,
		delivered: good,
		`firehose_connector_events_total{connector="files",result="dlq"}`:                         0,
		`firehose_connector_delivery_latency_seconds_count{connector="files"}`:                    good,
		`firehose_connector_batch_events_sum{connector="files"}`:                                  good,
		`firehose_connector_retries_total{connector="files"}`:                                     0,
		`firehose_connector_delivery_attempts_total{connector="files",outcome="retryable_error"}`: 0,
		`firehose_connector_events_total{connector="files",result="dropped"}`:                     0,
		`firehose_connector_in_flight_limit{connector="files"}`:                                   connectors.DefaultMaxInFlight,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	batches := m[`firehose_connector_batches_total{connector="files"}`]
	if batches < good/100 || m[`firehose_connector_batch_events_count{connector="files"}`] != batches ||
		m[`firehose_connector_delivery_attempts_total{connector="files",outcome="success"}`] != batches ||
		m[`firehose_connector_batch_bytes_count{connector="files"}`] != batches {
		t.Errorf("batches %v, batch_events_count %v, successes %v, batch_bytes_count %v", batches,
			m[`firehose_connector_batch_events_count{connector="files"}`],
			m[`firehose_connector_delivery_attempts_total{connector="files",outcome="success"}`],
			m[`firehose_connector_batch_bytes_count{connector="files"}`])
	}
	// Events were 2 s old when produced: none was delivered younger.
	if n := m[`firehose_connector_delivery_latency_seconds_bucket{connector="files",le="1"}`]; n != 0 {
		t.Errorf("%v events delivered within 1 s of a timestamp 2 s old", n)
	}
	if m[`firehose_connector_last_delivery_timestamp_seconds{connector="files"}`] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("last delivery time not set")
	}
	var lag, kafka bool
	for k := range m {
		lag = lag || strings.HasPrefix(k, `firehose_consumer_lag{group="firehose-connector-files"`)
		kafka = kafka || strings.HasPrefix(k, "firehose_kafka_")
	}
	if !lag || !kafka {
		t.Errorf("consumer lag present %v, franz-go client metrics present %v", lag, kafka)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A live /metrics passes promtool check metrics (franz-go's buffered-records
// gauges are served without the counter suffix "_total"), carries
// firehose_build_info, and counts pull API requests by status.
func TestLiveMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; `make tools` installs it (Debian's prometheus package)")
	}
	e := configenv.New(t, fmt.Sprintf(`api:
  listen: "127.0.0.1:0"
  position_key: 0123456789abcdef0123456789abcdef
  tokens:
    - {account: acc_1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
connectors:
  - name: files
    type: file
    batch: {max_events: 100, max_age: 200ms}
    file: {dir: %q}
`, t.TempDir()), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, done := startApp(t, ctx, e.Config)
	for _, token := range []string{"test", "wrong"} { // "test" is the configured token
		req, _ := http.NewRequest(http.MethodGet, "http://"+a+"/v1/stream?position=tail", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + a + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	m := scrape(t, a)
	var build, buffered bool
	for k := range m {
		build = build || strings.HasPrefix(k, "firehose_build_info{")
		buffered = buffered || strings.HasPrefix(k, "firehose_kafka_buffered_fetch_records{")
	}
	if !build || !buffered {
		t.Errorf("build info present %v, buffered fetch records gauge present %v", build, buffered)
	}
	if m[`firehose_pull_requests_total{code="200"}`] != 1 || m[`firehose_pull_requests_total{code="401"}`] != 1 || m[`firehose_pull_request_duration_seconds_count{code="200"}`] != 1 {
		t.Errorf("pull requests: 200 %v, 401 %v", m[`firehose_pull_requests_total{code="200"}`], m[`firehose_pull_requests_total{code="401"}`])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Go's profiles are served under /debug/pprof/ only with api.pprof.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		e := configenv.New(t, fmt.Sprintf("api: {listen: \"127.0.0.1:0\", pprof: %v}\n", on), nil)
		ctx, cancel := context.WithCancel(context.Background())
		addr, done := startApp(t, ctx, e.Config)
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if on && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile")) {
			t.Errorf("api.pprof on: %d %.80s", resp.StatusCode, body)
		}
		if !on && resp.StatusCode != http.StatusNotFound {
			t.Errorf("api.pprof off: %d", resp.StatusCode)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// With api.admin_listen, metrics and profiles move to the admin listener,
// off the API's port; health and readiness answer on both.
func TestAdminListenerTakesMetricsOffTheAPIPort(t *testing.T) {
	e := configenv.New(t, "api: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", pprof: true}\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	adminAddr := make(chan string, 1)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, e.Config, app.Options{OnReady: func(a string) { ready <- a }, OnAdmin: func(a string) { adminAddr <- a }})
	}()
	api, admin := <-ready, <-adminAddr
	for _, c := range []struct {
		addr, path string
		want       int
	}{
		{admin, "/metrics", http.StatusOK},
		{admin, "/debug/pprof/heap?debug=1", http.StatusOK},
		{admin, "/healthz", http.StatusOK},
		{admin, "/readyz", http.StatusOK},
		{api, "/metrics", http.StatusNotFound},
		{api, "/debug/pprof/heap?debug=1", http.StatusNotFound},
		{api, "/healthz", http.StatusOK},
		{api, "/readyz", http.StatusOK},
	} {
		t.Run(c.path, func(t *testing.T) {
			resp, err := http.Get("http://" + c.addr + c.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s%s: %d, want %d", c.addr, c.path, resp.StatusCode, c.want)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
