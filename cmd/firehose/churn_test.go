package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/ops"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// TestMain lets a test start this binary as the firehose command: with
// FIREHOSE_TEST_MAIN=1 it runs main instead of the tests, so a test can
// SIGKILL a real worker process.
func TestMain(m *testing.M) {
	if os.Getenv("FIREHOSE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// worker is one firehose run process of the churn test.
type worker struct {
	t    *testing.T
	name string
	args []string
	env  []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs []string // each start's output
}

// dumpLogs logs the worker's output when the test failed.
func (w *worker) dumpLogs() {
	if !w.t.Failed() {
		return
	}
	for _, p := range w.logs {
		b, _ := os.ReadFile(p)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		w.t.Logf("%s (%s):\n%s", w.name, p, b)
	}
}

func (w *worker) start() {
	w.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(exe, w.args...)
	cmd.Env = append(append(os.Environ(), "FIREHOSE_TEST_MAIN=1"), w.env...)
	log, err := os.Create(w.t.TempDir() + "/" + w.name + ".log")
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	w.logs = append(w.logs, log.Name())
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	w.mu.Lock()
	w.cmd, w.done = cmd, done
	w.mu.Unlock()
}

func (w *worker) signal(sig syscall.Signal) (done chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.cmd.Process.Signal(sig)
	return w.done
}

// hookReceiver is a webhook that refuses about 30% of requests with a 500
// and keeps every event of the others in order of arrival.
type hookReceiver struct {
	mu       sync.Mutex
	n        int
	got      []*schemas.Event
	distinct map[string]bool
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.n%10 < 3 {
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	ds, err := connectortest.Decode(body, "ndjson", "none")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, d := range ds {
		e := d.Event
		h.got = append(h.got, e)
		h.distinct[e.EventID] = true
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.distinct)
}

// Several SIGKILLs of processor and connector workers within seconds, each
// restarted with its instance id, while events are produced and the
// webhook fails 30% of requests: the groups drain to lag 0 without an
// operator, nothing is lost, each resource's events arrive in order, and a
// SIGTERM stop finishes within its shutdown timeout. Without static
// membership, the embedded broker kept killed members whose JoinGroup was
// pending and the groups stalled.
func TestChurnOfKilledWorkersDrainsWithoutAnOperator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five worker processes")
	}
	b := testenv.Start(t).Broker
	hook := &hookReceiver{distinct: map[string]bool{}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	cfg := writeConfig(t, fmt.Sprintf(`
kafka:
  brokers: ["%s"]
processor:
  transactional_id: churn-${WORKER:-none}
api: {listen: "off"}
connectors:
  - name: hook
    type: http
    encoding: ndjson
    compression: none
    batch: {max_events: 100, max_age: 200ms}
    retry: {max_attempts: 1000, initial_backoff: 20ms, max_backoff: 200ms}
    http: {url: "%s/events"}
`, b.Addr, srv.URL))
	if out, err := run(t, "topology", "apply", "-c", cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	const shutdown = 5 * time.Second
	var workers []*worker
	for _, spec := range []struct{ name, role string }{{"p1", "processor"}, {"p2", "processor"}, {"c1", "connector"}, {"c2", "connector"}, {"c3", "connector"}} {
		w := &worker{t: t, name: spec.name, env: []string{"WORKER=" + spec.name},
			args: []string{"run", "-c", cfg, "--role", spec.role, "--instance-id", spec.name, "--shutdown-timeout", shutdown.String(), "--log-level", "warn"}}
		w.start()
		workers = append(workers, w)
	}
	t.Cleanup(func() {
		for _, w := range workers {
			<-w.signal(syscall.SIGKILL)
		}
	})

	// Produce in the background while workers are killed.
	evs := generator.Unique(41, 300, 6000)
	produced := produceSpread(t, b.Addr, "events.raw", evs, 500, 300*time.Millisecond) // spread production over the churn

	// Three rounds: kill a processor and a connector within a second of
	// each other, restart them with the same instance ids, and kill them
	// again while they are joining their groups (a JoinGroup pending when
	// the connection dies is what left ghost members behind), then start
	// them for good.
	wait.Eventually(t, 120*time.Second, "first deliveries", func() bool { return hook.count() > 0 })
	for round, pair := range [][2]int{{0, 2}, {1, 3}, {0, 4}} {
		for _, i := range pair {
			<-workers[i].signal(syscall.SIGKILL)
		}
		for _, i := range pair {
			workers[i].start()
		}
		time.Sleep(300 * time.Millisecond) // starting, joining
		for _, i := range pair {
			<-workers[i].signal(syscall.SIGKILL)
		}
		for _, i := range pair {
			workers[i].start()
		}
		t.Logf("round %d: killed %s and %s twice, restarting them; %d events delivered so far", round, workers[pair[0]].name, workers[pair[1]].name, hook.count())
		time.Sleep(2 * time.Second)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}

	// With the default group timeouts (45 s session, 60 s rebalance), as
	// here: with static membership the workers drain in seconds (about 10 s
	// on an idle 2-core machine); with dynamic membership the groups stalled
	// for three and a half minutes on the killed members before they
	// drained. The deadline is far above the first and below the second.
	drainStart := time.Now()
	wait.Eventually(t, 150*time.Second, "every event delivered", func() bool { return hook.count() == len(evs) })
	t.Logf("drained %v after the last restart", time.Since(drainStart))
	hook.mu.Lock()
	connectortest.CheckOrder(t, evs, hook.got, false)
	hook.mu.Unlock()

	// Both groups report lag 0: firehose status counts records, not the
	// transaction markers after the last of them.
	wait.Eventually(t, 60*time.Second, "lag 0 in firehose status", func() bool {
		st, err := ops.Status(context.Background(), []kgo.Opt{kgo.SeedBrokers(b.Addr)}, "events.dlq", []ops.Worker{
			{Name: "processor", Kind: "processor", Group: "firehose-processor", Topic: "events.raw", Stage: "processor"},
			{Name: "hook", Kind: "connector", Group: "firehose-connector-hook", Topic: "events", Stage: "connector:hook"},
		}, 10*time.Millisecond)
		if err != nil {
			return false
		}
		for _, g := range st {
			if g.Lag != 0 {
				return false
			}
		}
		return true
	})

	// A stop finishes within the shutdown timeout, whatever the groups do.
	for _, w := range workers {
		start := time.Now()
		select {
		case <-w.signal(syscall.SIGTERM):
		case <-time.After(shutdown + 5*time.Second + 20*time.Second): // generous: catches a stop that waits on the group
			t.Fatalf("%s had not stopped %v after SIGTERM (shutdown timeout %v)", w.name, time.Since(start), shutdown)
		}
		if w.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("%s exited with %d", w.name, w.cmd.ProcessState.ExitCode())
		}
	}
}
