// Command pullload measures the pull API under followers, as
// scripts/bench-pull.sh runs it: it writes the tokens of N accounts, then
// produces a stream of events at a fixed rate over those accounts straight
// to the events topic (standing in for the processor) while one follower
// per account polls /v1/stream with the position it was given, and prints
// answers/s, request latency, event latency, what the followers received
// of what they were owed, refusals, and the API process's CPU.
//
//	pullload tokens -accounts 500 -out DIR
//	pullload run -dir DIR -api URL -brokers HOST:PORT -topic T -api-pid PID ...
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/pullapi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pullload tokens|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "tokens":
		err = tokens(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullload:", err)
		os.Exit(1)
	}
}

// tokens writes DIR/tokens.yaml (for api.tokens_file) and DIR/secrets
// (account and token per line) for n accounts.
func tokens(args []string) error {
	fs := flag.NewFlagSet("tokens", flag.ExitOnError)
	n := fs.Int("accounts", 500, "accounts, one token each")
	dir := fs.String("out", ".", "directory to write tokens.yaml and secrets to")
	_ = fs.Parse(args)
	var f pullapi.TokensFile
	var secrets strings.Builder
	for i := range *n {
		acc := fmt.Sprintf("acc_%04d", i)
		tok, hash := pullapi.NewToken()
		f.Tokens = append(f.Tokens, pullapi.APIToken{Account: acc, SHA256: hash})
		fmt.Fprintf(&secrets, "%s %s\n", acc, tok)
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "tokens.yaml"), b, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*dir, "secrets"), []byte(secrets.String()), 0o600)
}

type options struct {
	dir, api, brokers, topic string
	apiPID                   int
	followers                int
	rate                     int
	duration, back, drain    time.Duration
	limit                    int
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&o.dir, "dir", ".", "directory pullload tokens wrote")
	fs.StringVar(&o.api, "api", "http://127.0.0.1:8080", "the pull API's base URL")
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers")
	fs.StringVar(&o.topic, "topic", "events", "the processed events topic")
	fs.IntVar(&o.apiPID, "api-pid", 0, "the API process, whose CPU is reported")
	fs.IntVar(&o.followers, "followers", 500, "followers: one per account for the first N accounts, round the accounts again past their number")
	fs.IntVar(&o.rate, "rate", 10000, "events per second produced over all the tokens' accounts")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to produce while measuring")
	fs.DurationVar(&o.back, "back", 0, "resume mode: followers take their position at top, stop for this long while the stream goes on, then resume from it (and follow for -duration)")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "how long followers go on after the stream stops")
	fs.IntVar(&o.limit, "limit", 100, "events per page")
	_ = fs.Parse(args)

	secrets, err := readSecrets(filepath.Join(o.dir, "secrets"))
	if err != nil {
		return err
	}
	accounts := make([]string, 0, len(secrets))
	for a := range secrets {
		accounts = append(accounts, a)
	}
	slices.Sort(accounts)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(o.brokers, ",")...), kgo.DefaultProduceTopic(o.topic),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = o.followers + 10
	http.DefaultTransport.(*http.Transport).MaxIdleConns = o.followers + 10

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &stats{owed: map[string]*atomic.Int64{}}
	for _, a := range accounts {
		st.owed[a] = new(atomic.Int64)
	}
	// Followers take their position at top first.
	fl := make([]*follower, o.followers)
	for i := range fl {
		acc := accounts[i%len(accounts)] // more followers than accounts: several per token
		fl[i] = &follower{account: acc, token: secrets[acc], pos: "top", seen: map[string]bool{}}
	}
	var wg sync.WaitGroup
	for _, f := range fl {
		wg.Go(func() { f.poll(ctx, o, st, true) })
	}
	wg.Wait()

	counting := atomic.Bool{}
	counting.Store(true)
	pctx, pstop := context.WithCancel(ctx)
	produced := make(chan int64, 1)
	go func() { produced <- produce(pctx, cl, o, accounts, st) }()
	if o.back > 0 {
		time.Sleep(o.back)
	}
	cpu0, wall0 := cpuOf(o.apiPID), time.Now()
	in0, all0 := withinSecond(o.api)
	fctx, fstop := context.WithCancel(ctx)
	for _, f := range fl {
		wg.Go(func() { f.poll(fctx, o, st, false) })
	}
	time.Sleep(o.duration)
	pstop()
	total := <-produced
	time.Sleep(o.drain)
	fstop()
	wg.Wait()
	cpu1, wall1 := cpuOf(o.apiPID), time.Now()
	in1, all1 := withinSecond(o.api)

	var owed, got int64
	for _, f := range fl {
		owed += st.owed[f.account].Load()
		got += int64(len(f.seen))
	}
	reqLat, evLat := st.latencies()
	secs := wall1.Sub(wall0).Seconds()
	mode := "head"
	if o.back > 0 {
		mode = fmt.Sprintf("resume %s back", o.back)
	}
	fmt.Printf("followers %d, %s, %d events/s for %s (%d events over %d accounts)\n", o.followers, mode, o.rate, o.back+o.duration, total, len(accounts))
	fmt.Printf("  answers/s %.0f  request p50/p99 %s / %s  event latency p50/p99 %s / %s\n",
		float64(st.answers.Load())/secs, pct(reqLat, 0.5), pct(reqLat, 0.99), pct(evLat, 0.5), pct(evLat, 0.99))
	fmt.Printf("  received %d of %d owed (%.1f%%)  503: %d  429: %d  other errors: %d  records not produced: %d\n",
		got, owed, 100*float64(got)/float64(max(owed, 1)), st.s503.Load(), st.s429.Load(), st.other.Load(), st.produceErrs.Load())
	if all1 > all0 {
		fmt.Printf("  the server's view (firehose_pull_request_duration_seconds): %.2f%% of %.0f answers within 1 s\n", 100*(in1-in0)/(all1-all0), all1-all0)
	}
	if o.apiPID > 0 {
		fmt.Printf("  API process CPU: %.2f cores (%.1f s over %.1f s)\n", (cpu1-cpu0)/secs, cpu1-cpu0, secs)
	}
	return nil
}

type stats struct {
	owed                map[string]*atomic.Int64 // events produced per account
	answers, s503, s429 atomic.Int64
	other, produceErrs  atomic.Int64
	mu                  sync.Mutex
	reqLat, evLat       []time.Duration
}

// fail counts an error other than 503 and 429, and prints the first few.
func (s *stats) fail(msg string) {
	if s.other.Add(1) <= 3 {
		fmt.Fprintln(os.Stderr, "pullload:", msg)
	}
}

func (s *stats) latencies() ([]time.Duration, []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.reqLat)
	slices.Sort(s.evLat)
	return s.reqLat, s.evLat
}

func pct(d []time.Duration, q float64) string {
	if len(d) == 0 {
		return "-"
	}
	return d[int(q*float64(len(d)-1))].Round(time.Millisecond).String()
}

// produce writes events at o.rate over accounts until ctx ends and
// returns how many it wrote.
func produce(ctx context.Context, cl *kgo.Client, o options, accounts []string, st *stats) int64 {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := o.rate / 100
	var n int64
	seq := map[string]int64{}
	for {
		select {
		case <-ctx.Done():
			_ = cl.Flush(context.Background())
			return n
		case <-tick.C:
		}
		now := time.Now()
		for range per {
			acc := accounts[rand.IntN(len(accounts))]
			res := fmt.Sprintf("%s-lead-%d", acc, rand.IntN(20))
			seq[res]++
			n++
			v := fmt.Appendf(nil, `{"event_id":"ev-%d","timestamp":%q,"account_id":%q,"resource_id":%q,"sequence":%d,"event_type":"lead.updated","outcome":"success",`+
				`"metadata":{"produced_ns":%d,"price":%d,"source":"web","campaign":"spring-sale-2026"},"lead_data":{"email":"j***@example.com","state":"CA","zip":"94105"}}`,
				n, now.UTC().Format(time.RFC3339Nano), acc, res, seq[res], now.UnixNano(), rand.IntN(100))
			// Not ctx: a record produced as the run stops must still be
			// written, as it is owed.
			cl.Produce(context.Background(), &kgo.Record{Key: []byte(res), Value: v}, func(_ *kgo.Record, err error) {
				if err == nil {
					st.owed[acc].Add(1)
				} else {
					st.produceErrs.Add(1)
				}
			})
		}
	}
}

type follower struct {
	account, token, pos string
	seen                map[string]bool
}

type event struct {
	ID       string `json:"event_id"`
	Metadata struct {
		ProducedNS int64 `json:"produced_ns"`
	} `json:"metadata"`
}

// poll follows the stream until ctx ends; once, it takes one answer
// only (the position at top).
func (f *follower) poll(ctx context.Context, o options, st *stats, once bool) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/stream?position=%s&limit=%d", o.api, f.pos, o.limit), nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.fail(err.Error())
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			st.s503.Add(1)
			time.Sleep(time.Second)
			continue
		case http.StatusTooManyRequests:
			st.s429.Add(1)
			time.Sleep(time.Second)
			continue
		default:
			st.fail(fmt.Sprintf("%d %.200s", resp.StatusCode, body))
			time.Sleep(time.Second)
			continue
		}
		var p pullapi.PageOf[event]
		if err := json.Unmarshal(body, &p); err != nil {
			st.fail(err.Error())
			continue
		}
		f.pos = p.Meta.Position
		if once {
			return
		}
		now := time.Now()
		st.answers.Add(1)
		st.mu.Lock()
		st.reqLat = append(st.reqLat, took)
		for _, it := range p.Items {
			if !f.seen[it.Data.ID] {
				f.seen[it.Data.ID] = true
				st.evLat = append(st.evLat, now.Sub(time.Unix(0, it.Data.Metadata.ProducedNS)))
			}
		}
		st.mu.Unlock()
	}
}

// withinSecond reads the API's /metrics: how many answers took at most a
// second, and how many there were, so far.
func withinSecond(api string) (within, all float64) {
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "firehose_pull_request_duration_seconds_") {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.Contains(line, `le="1"`):
			within += v
		case strings.HasPrefix(line, "firehose_pull_request_duration_seconds_count"):
			all += v
		}
	}
	return within, all
}

func readSecrets(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		acc, tok, ok := strings.Cut(sc.Text(), " ")
		if ok {
			out[acc] = tok
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no secrets in " + path)
	}
	return out, sc.Err()
}

// cpuOf is the CPU seconds (user and system) process pid has used; 0
// when unknown.
func cpuOf(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis; utime and
	// stime are the 14th and 15th of the line, in clock ticks (100/s).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	stt, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + stt) / 100
}
