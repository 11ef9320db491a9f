package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/app"
)

// A stop finishes within the shutdown timeout (plus app.StopMargin) even
// while the groups are rebalancing. The broker here holds every JoinGroup of
// the processor's and the connector's groups until the test ends, the way a
// rebalance that waits for a slow or dead member does. franz-go's Close
// waits for a rebalance to finish before it leaves the group; before the
// stop was bounded, it waited as long as the rebalance did (up to the
// rebalance timeout, a minute by default, and here for ever).
func TestStopDuringARebalanceFinishesWithinTheTimeout(t *testing.T) {
	b := startBroker(t)
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
api: {listen: "off"}
connectors:
  - name: files
    type: file
    file: {dir: %s}
`, b.Addr, t.TempDir()), nil)
	applyTopology(t, cfg)

	// Hold the joins of both groups, the processor's and the connector's.
	release := make(chan struct{})
	held := make(chan struct{})
	var mu sync.Mutex
	groups := map[string]bool{}
	t.Cleanup(func() { close(release) })
	b.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		mu.Lock()
		groups[kreq.(*kmsg.JoinGroupRequest).Group] = true
		if len(groups) == 2 && groups[cfg.Processor.Group] && groups[cfg.Connectors[0].Group] {
			select {
			case <-held:
			default:
				close(held)
			}
		}
		mu.Unlock()
		b.SleepControl(func() { <-release })
		return nil, nil, false
	})

	const timeout = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, app.Options{ShutdownTimeout: timeout}) }()
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("the processor and the connector never both asked to join their groups")
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(stopped)
		t.Logf("stopped %v after the signal, with the rebalance still under way: %v", took, err)
	case <-time.After(timeout + app.StopMargin + 20*time.Second): // generous: catches a stop that waits for the rebalance
		t.Fatalf("the stop had not finished %v after the signal (shutdown timeout %v)", timeout+app.StopMargin+20*time.Second, timeout)
	}
}
