package pullapi_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// One request's deadline never fails the others: the broker holds a fetch
// past the request's read deadline, that request answers at its budget,
// and the requests that share the broker connection with it (sent while it
// waits) are answered 200, not 503, and with their events once the broker
// answers.
func TestASlowFetchFailsNoOtherRequest(t *testing.T) {
	e := newEnv(t, 1)
	accounts := []string{"acc_A", "acc_B", "acc_C", "acc_D"}
	e.produce(accounts, 5, 2, 1)
	url, _ := e.server(0)
	// Warm the server's metadata and connections.
	if code, body, _ := get(t, url, e.secret["acc_A"], "tail", 10); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var held atomic.Bool
	e.broker.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.broker.KeepControl()
		if held.CompareAndSwap(false, true) {
			e.broker.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
		}
		return nil, nil, false
	})
	var wg sync.WaitGroup
	codes := make([]int, len(accounts))
	for i, acc := range accounts {
		wg.Go(func() {
			if i > 0 {
				time.Sleep(300 * time.Millisecond) // behind the held fetch
			}
			codes[i], _, _ = get(t, url, e.secret[acc], "tail", 10)
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("%s: %d, want 200", accounts[i], c)
		}
	}
	// And the connection is still good.
	if code, body, _ := get(t, url, e.secret["acc_B"], "tail", 10); code != http.StatusOK {
		t.Fatalf("after the slow fetch: %d %s", code, body)
	}
}
