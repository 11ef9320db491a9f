package pullapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPullAPI50Clients runs 50 concurrent clients, five for each of
// ten accounts (within the default of 8 requests per token), each walking
// the stream from tail to top in pages of 100 and starting again from
// tail. It reports requests per second, latency percentiles and events
// served per second. A request refused (429 or 503) fails the benchmark.
func BenchmarkPullAPI50Clients(b *testing.B) {
	const clients = 50
	e := newEnv(b, 6)
	accounts := []string{"acc_A", "acc_B", "acc_C", "acc_D", "acc_E", "acc_F", "acc_G", "acc_H", "acc_I", "acc_J"}
	e.produce(accounts, 100, 20, 1) // 20,000 events, 2,000 per account
	url, _ := e.server(0)
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = clients

	var (
		mu     sync.Mutex
		lat    []time.Duration
		events atomic.Int64
		next   atomic.Int64
	)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			token := e.secret[accounts[c%len(accounts)]]
			pos := "tail"
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				code, body, took := get(b, url, token, pos, 100)
				if code != http.StatusOK {
					b.Errorf("%d %s", code, body)
					return
				}
				var p page
				if err := json.Unmarshal(body, &p); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, took)
				events.Add(int64(len(p.Items)))
				pos = p.Meta.Position
				if p.Meta.Top {
					pos = "tail"
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(events.Load())/elapsed.Seconds(), "events/s")
}
