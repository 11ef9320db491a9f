package main

import (
	"context"
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

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/ops"
	"github.com/firehose/firehose/testsupport/configenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// TestDLQListShowRedrive: a webhook refuses one event (400) the first
// time and a processor-stage dead letter sits beside it. dlq list shows
// both with their reasons, show prints one whole, and redrive --connector
// sends only the webhook's back, which the webhook then receives once
// while the file connector does not deliver it a second time.
func TestDLQListShowRedrive(t *testing.T) {
	var (
		mu       sync.Mutex
		hookGot  = map[string]int{}
		refused  bool
		fileGot  = map[string]int{}
		fileSeen = t.TempDir()
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(string(body), `"event_id":"e-bad"`) && !refused {
			refused = true
			http.Error(w, "unknown campaign", http.StatusBadRequest)
			return
		}
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var e struct {
				ID string `json:"event_id"`
			}
			_ = json.Unmarshal([]byte(l), &e)
			hookGot[e.ID]++
		}
	}))
	defer hook.Close()
	e := configenv.New(t, fmt.Sprintf(`api: {listen: "off"}
connectors:
  - name: hooks
    type: http
    batch: {max_events: 1, max_age: 100ms}
    compression: none
    http: {url: %q}
  - name: files
    type: file
    batch: {max_events: 100, max_age: 100ms}
    compression: none
    file: {dir: %q}
`, hook.URL, fileSeen), nil)
	cfg, path := e.Config, e.Path
	cl := e.Client(kgo.DefaultProduceTopic(cfg.Topology.Raw.Name))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := func(id string, seq any) *kgo.Record {
		return &kgo.Record{Key: []byte("lead_1"), Value: fmt.Appendf(nil, `{"event_id":%q,"timestamp":"2026-11-23T10:00:00Z","account_id":"acc_1","resource_id":"lead_1","sequence":%v,"event_type":"lead.created"}`, id, seq)}
	}
	if err := cl.ProduceSync(ctx, ev("e1", 1), ev("e-bad", 2), ev("e-invalid", `"3"`), ev("e4", 4)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, app.Options{}) }()
	files := func() map[string]int {
		out := map[string]int{}
		for _, id := range readEvents(t, fileSeen) {
			out[id]++
		}
		return out
	}
	wait.Eventually(t, 30*time.Second, "the webhook's good events", func() bool { mu.Lock(); defer mu.Unlock(); return hookGot["e1"] == 1 && hookGot["e4"] == 1 })
	wait.Eventually(t, 30*time.Second, "the files", func() bool {
		fileGot = files()
		return fileGot["e1"] == 1 && fileGot["e-bad"] == 1 && fileGot["e4"] == 1
	})

	var (
		out string
		err error
	)
	wait.Eventually(t, 30*time.Second, "two dead letters", func() bool {
		out, err = run(t, "dlq", "list", "-c", path)
		return err == nil && strings.Contains(out, "2 dead letter(s)")
	})
	for _, want := range []string{"connector:hooks", "permanent", "processor", "invalid", "sequence"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dlq list lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "dlq", "list", "-c", path, "--connector", "hooks", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var dl struct {
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Response  string `json:"response"`
		Value     string `json:"value"`
	}
	if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &dl); err != nil || !strings.Contains(dl.Value, "e-bad") || !strings.Contains(dl.Response, "unknown campaign") {
		t.Fatalf("dlq list --json: %v\n%s", err, out)
	}
	out, err = run(t, "dlq", "show", "-c", path, fmt.Sprintf("%d:%d", dl.Partition, dl.Offset))
	if err != nil || !strings.Contains(out, `"stage": "connector:hooks"`) || !strings.Contains(out, "e-bad") {
		t.Fatalf("dlq show: %v\n%s", err, out)
	}

	out, err = run(t, "dlq", "redrive", "-c", path, "--connector", "hooks", "--dry-run")
	if err != nil || !strings.Contains(out, "1 record(s) -> events (for connector hooks)") || !strings.Contains(out, "dry run") {
		t.Fatalf("redrive --dry-run: %v\n%s", err, out)
	}
	if out, err = run(t, "dlq", "redrive", "-c", path, "--connector", "hooks"); err != nil || !strings.Contains(out, "redriven: 1") {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	wait.Eventually(t, 30*time.Second, "the redriven event at the webhook", func() bool { mu.Lock(); defer mu.Unlock(); return hookGot["e-bad"] == 1 })

	// The processor's dead letter goes back to raw; nothing was fixed, so
	// it fails validation and is a dead letter once more. (That a redriven
	// event passes dedupe is TestRedrivenEventPassesDedupe's.)
	if out, err = run(t, "dlq", "redrive", "-c", path, "--stage", "processor"); err != nil || !strings.Contains(out, "1 record(s) -> events.raw") {
		t.Fatalf("redrive processor: %v\n%s", err, out)
	}
	wait.Eventually(t, 30*time.Second, "a third dead letter", func() bool {
		out, err = run(t, "dlq", "list", "-c", path, "--stage", "processor")
		return err == nil && strings.Contains(out, "2 dead letter(s)")
	})
	wait.Consistently(t, 500*time.Millisecond, "the webhook got each event once", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range hookGot {
			if n != 1 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	for id, n := range hookGot {
		if n != 1 {
			t.Errorf("webhook got %s %d times", id, n)
		}
	}
	mu.Unlock()
	for id, n := range files() {
		if n != 1 {
			t.Errorf("files hold %s %d times: the redrive for hooks reached the file connector", id, n)
		}
	}

	// status counts the dead letters of the last hour against what each
	// worker committed in it: the processor 2 against 5 raw records; hooks
	// 1 against 4 events, where the transaction markers of the events
	// topic, which take offsets too, lower the rate a little.
	out, err = run(t, "status", "-c", path, "--json", "--interval", "100ms")
	if err != nil {
		t.Fatal(err)
	}
	var st []ops.GroupStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	rates := map[string]string{}
	for _, g := range st {
		rates[g.Name] = fmt.Sprintf("%d %.3f", g.DeadLettersLastHour, g.ErrorRate)
		if g.Name == "hooks" && (g.LastDelivery == nil || time.Since(*g.LastDelivery) > time.Minute) {
			t.Errorf("hooks last delivery %v", g.LastDelivery)
		}
	}
	var hooks ops.GroupStatus
	for _, g := range st {
		if g.Name == "hooks" {
			hooks = g
		}
	}
	if hooks.DeadLettersLastHour != 1 || hooks.ErrorRate < 0.1 || hooks.ErrorRate > 0.2 || rates["processor"] != "2 0.286" || rates["files"] != "0 0.000" {
		t.Errorf("dead letters and error rates %v", rates)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// dlq list shows what a webhook put in its response, escape sequences
// included, escaped: a terminal prints it instead of acting on it.
func TestOneLineEscapesControlCharacters(t *testing.T) {
	got := oneLine("HTTP 400: \x1b[2J\x1b]0;pwned\x07 bad\tinput\x00", 100)
	if strings.ContainsAny(got, "\x1b\x07\x00") || !strings.Contains(got, `\x1b[2J`) || !strings.Contains(got, "bad input") {
		t.Fatalf("%q", got)
	}
	if got := oneLine("plain message", 100); got != "plain message" {
		t.Fatalf("%q", got)
	}
}
