package pullapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

const (
	topic   = "events"
	testKey = "0123456789abcdef0123456789abcdef-test-key"
)

type env struct {
	t      testing.TB
	broker *embedded.Broker
	cl     *kgo.Client
	tokens []pullapi.APIToken
	secret map[string]string // account → token
	srv    *pullapi.Server   // the last one started
}

func newEnv(t testing.TB, partitions int32) *env {
	t.Helper()
	b := testenv.Start(t).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, broker: b, cl: cl, secret: map[string]string{}}
	for _, acc := range []string{"acc_A", "acc_B", "acc_C", "acc_D", "acc_E", "acc_F", "acc_G", "acc_H", "acc_I", "acc_J"} {
		tok, hash := pullapi.NewToken()
		e.secret[acc] = tok
		e.tokens = append(e.tokens, pullapi.APIToken{Account: acc, SHA256: hash})
	}
	return e
}

// server starts an API replica; stop it with the returned func.
func (e *env) server(budget time.Duration) (url string, stop func()) {
	return e.serverWith(pullapi.Options{Budget: budget})
}

// serverWith starts an API replica with o's budget and limits.
func (e *env) serverWith(o pullapi.Options) (url string, stop func()) {
	e.t.Helper()
	signer, err := pullapi.NewSigner([]byte(testKey))
	if err != nil {
		e.t.Fatal(err)
	}
	toks, err := pullapi.NewTokens(e.tokens, "", false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := pullapi.New(pullapi.Options{Kafka: []kgo.Opt{kgo.SeedBrokers(e.broker.Addr)}, Topic: topic, Encoding: "json", Signer: signer, Tokens: toks, Budget: o.Budget, Limits: o.Limits, WindowBytes: o.WindowBytes})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	mux := http.NewServeMux()
	s.Register(mux)
	hs := httptest.NewServer(mux)
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		hs.Close()
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	}
	e.t.Cleanup(stop)
	return hs.URL, stop
}

type ev struct {
	ID       string `json:"event_id"`
	Account  string `json:"account_id"`
	Resource string `json:"resource_id"`
	Seq      int64  `json:"sequence"`
}

func eventJSON(acc, res string, seq int64) []byte {
	return fmt.Appendf(nil, `{"event_id":"%s-%s-%d","timestamp":"2026-11-23T10:00:00Z","account_id":%q,"resource_id":%q,"sequence":%d,"event_type":"lead.updated","metadata":{"n":%d}}`,
		acc, res, seq, acc, res, seq, seq)
}

// produce writes rounds × resources events per account, interleaving the
// accounts, keyed by resource so each resource stays in one partition.
func (e *env) produce(accounts []string, resources, rounds int, firstSeq int64) map[string][]ev {
	e.t.Helper()
	return e.produceNamed(accounts, resources, rounds, firstSeq, func(acc string, i int) string { return fmt.Sprintf("%s-lead-%d", acc, i) })
}

// produceNamed is produce with the resource ids name gives.
func (e *env) produceNamed(accounts []string, resources, rounds int, firstSeq int64, name func(acc string, i int) string) map[string][]ev {
	e.t.Helper()
	want := map[string][]ev{}
	var recs []*kgo.Record
	for r := range rounds {
		for i := range resources {
			for _, acc := range accounts {
				res := name(acc, i)
				seq := firstSeq + int64(r)
				recs = append(recs, &kgo.Record{Key: []byte(res), Value: eventJSON(acc, res, seq)})
				want[acc] = append(want[acc], ev{ID: fmt.Sprintf("%s-%s-%d", acc, res, seq), Account: acc, Resource: res, Seq: seq})
			}
		}
	}
	for len(recs) > 0 {
		n := min(len(recs), 10000)
		if err := e.cl.ProduceSync(context.Background(), recs[:n]...).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
		recs = recs[n:]
	}
	return want
}

type page = pullapi.PageOf[ev]

type apiErr struct {
	Error struct {
		Status  int    `json:"status"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func get(t testing.TB, url, token, position string, limit int) (int, []byte, time.Duration) {
	t.Helper()
	u := url + "/v1/stream?position=" + position
	if limit > 0 {
		u += fmt.Sprintf("&limit=%d", limit)
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, body, time.Since(start)
}

func getPage(t testing.TB, url, token, position string, limit int) page {
	t.Helper()
	code, body, _ := get(t, url, token, position, limit)
	if code != http.StatusOK {
		t.Fatalf("GET position=%.20s…: %d %s", position, code, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if p.Meta.Count != len(p.Items) {
		t.Fatalf("meta.count %d, %d items", p.Meta.Count, len(p.Items))
	}
	return p
}

// walk follows the stream from position until top, at most maxPages pages.
func walk(t testing.TB, url, token, position string, limit, maxPages int) ([]ev, string, bool) {
	t.Helper()
	var got []ev
	for range maxPages {
		p := getPage(t, url, token, position, limit)
		for _, it := range p.Items {
			if it.Meta.ResourceID != it.Data.Resource || it.Meta.Sequence != it.Data.Seq || it.Meta.EventType != "lead.updated" {
				t.Fatalf("item meta %+v does not describe its data %+v", it.Meta, it.Data)
			}
			got = append(got, it.Data)
		}
		if len(p.Items) > limit {
			t.Fatalf("%d items for limit %d", len(p.Items), limit)
		}
		position = p.Meta.Position
		if p.Meta.Top {
			return got, position, true
		}
	}
	return got, position, false
}

// checkExactly asserts got holds every event of want once, and per
// resource in sequence order.
func checkExactly(t *testing.T, want, got []ev) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, e := range got {
		if seen[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		if e.Seq <= last[e.Resource] {
			t.Fatalf("resource %s: sequence %d after %d", e.Resource, e.Seq, last[e.Resource])
		}
		last[e.Resource] = e.Seq
	}
	for _, e := range want {
		if !seen[e.ID] {
			t.Fatalf("event %s never delivered (got %d of %d)", e.ID, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
}

func TestWalkFromTailToTopSeesOnlyItsAccount(t *testing.T) {
	e := newEnv(t, 6)
	want := e.produce([]string{"acc_A", "acc_B"}, 40, 15, 1)
	// An aborted transaction of A's must never be served.
	abort(t, e, "acc_A", "acc_A-lead-0")
	more := e.produce([]string{"acc_A", "acc_B"}, 40, 1, 16)
	want["acc_A"] = append(want["acc_A"], more["acc_A"]...)

	url, _ := e.server(0)
	got, _, top := walk(t, url, e.secret["acc_A"], "tail", 37, 1000)
	if !top {
		t.Fatal("never reached top")
	}
	for _, g := range got {
		if g.Account != "acc_A" {
			t.Fatalf("account A was served %+v", g)
		}
	}
	checkExactly(t, want["acc_A"], got)
}

func TestWalkResumesAcrossAPIRestart(t *testing.T) {
	e := newEnv(t, 6)
	want := e.produce([]string{"acc_A", "acc_B"}, 30, 20, 1)
	url, stop := e.server(0)
	first, pos, top := walk(t, url, e.secret["acc_A"], "tail", 50, 4)
	if top || len(first) == 0 {
		t.Fatalf("first walk: top %v with %d events; the test needs a walk cut short", top, len(first))
	}
	stop()

	// Another replica (a restart, or the next one behind the load
	// balancer) takes the saved position.
	url2, _ := e.server(0)
	rest, _, top := walk(t, url2, e.secret["acc_A"], pos, 50, 1000)
	if !top {
		t.Fatal("never reached top")
	}
	checkExactly(t, want["acc_A"], append(first, rest...))
}

func TestOtherAccountsFloodStillAnswersAndAdvances(t *testing.T) {
	e := newEnv(t, 6)
	e.produce([]string{"acc_B"}, 1000, 100, 1) // 100,000 of B's first
	want := e.produce([]string{"acc_A"}, 10, 3, 1)
	// A budget shorter than any read: each request makes exactly one
	// round of reads (at most 256 KiB per partition) and answers, so the
	// flood of several MiB outlasts many requests on any machine, however
	// fast.
	const budget = time.Nanosecond
	url, _ := e.server(budget)
	signer, _ := pullapi.NewSigner([]byte(testKey))

	pos := "tail"
	var got []ev
	empty, prev, stalled := 0, int64(-1), 0
	for range 10000 {
		code, body, took := get(t, url, e.secret["acc_A"], pos, 100)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		if took > 10*time.Second { // catches a request that ignores its budget, not a slow machine
			t.Fatalf("a request took %v with a budget of %v", took, budget)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			got = append(got, it.Data)
		}
		dp, err := signer.Decode(p.Meta.Position, "acc_A")
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, o := range dp.Offsets {
			sum += o
		}
		// A busy machine may end a request's one round of reads before
		// it reads anything (its deadline is 900 ms): then the position
		// stays. It may never go back, nor stay for long.
		switch {
		case sum < prev:
			t.Fatalf("position went back: %d after %d", sum, prev)
		case sum == prev && !p.Meta.Top:
			if stalled++; stalled == 20 {
				t.Fatalf("position did not advance in %d requests: %d", stalled, sum)
			}
		default:
			stalled = 0
		}
		prev = sum
		t.Logf("page: %d items, top %v, offsets %d, %v", len(p.Items), p.Meta.Top, sum, took)
		if len(p.Items) == 0 && !p.Meta.Top {
			empty++
		}
		pos = p.Meta.Position
		if p.Meta.Top {
			break
		}
	}
	if empty == 0 {
		t.Fatal("no empty page before A's events: the flood did not outlast a budget, so the test proved nothing")
	}
	t.Logf("%d empty pages while skipping 100,000 of B's events", empty)
	checkExactly(t, want["acc_A"], got)
}

func TestLongPollAnswersWithNewEvent(t *testing.T) {
	e := newEnv(t, 6)
	e.produce([]string{"acc_A", "acc_B"}, 5, 2, 1)
	url, _ := e.server(0)
	_, pos, top := walk(t, url, e.secret["acc_A"], "tail", 100, 10)
	if !top {
		t.Fatal("no top")
	}
	// The long poll waits on a server with a long budget, so that a slow
	// machine producing the event late still finds the request waiting:
	// it must answer when the event comes, not when the budget ends.
	longURL, _ := e.server(time.Minute)
	type res struct {
		p   page
		dur time.Duration
	}
	out := make(chan res, 1)
	go func() {
		start := time.Now()
		p := getPage(t, longURL, e.secret["acc_A"], pos, 100)
		out <- res{p, time.Since(start)}
	}()
	time.Sleep(150 * time.Millisecond) // the request is waiting at the head
	e.produce([]string{"acc_B"}, 1, 1, 50)
	want := e.produce([]string{"acc_A"}, 1, 1, 50)
	r := <-out
	if r.dur > 30*time.Second {
		t.Fatalf("the long poll answered after %v: at the end of its budget, not when the event came", r.dur)
	}
	if len(r.p.Items) != 1 || r.p.Items[0].Data.ID != want["acc_A"][0].ID || !r.p.Meta.Top {
		t.Fatalf("long poll answered %+v", r.p)
	}
	// At the head with nothing new: an empty page, top, same position.
	p := getPage(t, url, e.secret["acc_A"], r.p.Meta.Position, 100)
	if len(p.Items) != 0 || !p.Meta.Top {
		t.Fatalf("idle head answered %+v", p)
	}
}

func TestTopStartsFromNow(t *testing.T) {
	e := newEnv(t, 3)
	e.produce([]string{"acc_A"}, 5, 2, 1)
	url, _ := e.server(0)
	p := getPage(t, url, e.secret["acc_A"], "top", 100)
	if len(p.Items) != 0 || !p.Meta.Top {
		t.Fatalf("top answered %+v", p)
	}
	want := e.produce([]string{"acc_A"}, 5, 1, 3)
	got, _, _ := walk(t, url, e.secret["acc_A"], p.Meta.Position, 100, 10)
	checkExactly(t, want["acc_A"], got)
}

func TestErrorsAreClearJSON(t *testing.T) {
	e := newEnv(t, 6)
	e.produce([]string{"acc_A", "acc_B"}, 10, 3, 1)
	url, _ := e.server(0)
	a, b := e.secret["acc_A"], e.secret["acc_B"]
	posA := getPage(t, url, a, "tail", 5).Meta.Position
	posB := getPage(t, url, b, "tail", 5).Meta.Position
	tampered := []byte(posA)
	tampered[5] ^= 1
	if tampered[5] == '-' || tampered[5] == '_' {
		tampered[5] = 'A'
	}

	for _, c := range []struct {
		name, token, position string
		limit                 int
		status                int
		code                  string
	}{
		{"no token", "", "tail", 0, 401, "unauthorized"},
		{"unknown token", "fh_nope", "tail", 0, 401, "unauthorized"},
		{"dev token outside dev", "dev-acc_A", "tail", 0, 401, "unauthorized"},
		{"limit 0", a, "tail", -1, 400, "invalid_limit"},
		{"limit 1000", a, "tail", 1000, 400, "invalid_limit"},
		{"no position", a, "", 0, 400, "invalid_position"},
		{"garbage position", a, "%21%21not-a-position", 0, 400, "invalid_position"},
		{"tampered position", a, string(tampered), 0, 400, "invalid_position"},
		{"another account's position", a, posB, 0, 403, "other_account"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := url + "/v1/stream?position=" + c.position
			switch {
			case c.limit == -1:
				u += "&limit=0"
			case c.limit > 0:
				u += fmt.Sprintf("&limit=%d", c.limit)
			}
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ae apiErr
			if err := json.NewDecoder(resp.Body).Decode(&ae); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || ae.Error.Status != c.status || ae.Error.Code != c.code || ae.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, ae, c.status, c.code)
			}
		})
	}

	// Retention passes the position: 410, and the message says what to do.
	adm := kadm.NewClient(e.cl)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(context.Background(), kadm.Offsets(ends.Offsets())); err != nil {
		t.Fatal(err)
	}
	// The window lets go of deleted events within one of its fetches.
	wait.Eventually(t, 10*time.Second, "the window to drop the deleted events", func() bool { return e.srv.Stats().WindowEvents == 0 })
	code, body, _ := get(t, url, a, posA, 0)
	var ae apiErr
	_ = json.Unmarshal(body, &ae)
	if code != http.StatusGone || ae.Error.Code != "position_expired" || !strings.Contains(ae.Error.Message, "position=tail") {
		t.Fatalf("expired position: %d %s", code, body)
	}
	// And tail works again.
	if p := getPage(t, url, a, "tail", 5); !p.Meta.Top || len(p.Items) != 0 {
		t.Fatalf("tail after retention: %+v", p)
	}
}

func TestTokensRotateWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.yaml")
	oldTok, oldHash := pullapi.NewToken()
	newTok, newHash := pullapi.NewToken()
	write := func(hash string) {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, "tokens:\n  - account: acc_A\n    sha256: %s\n    note: ops\n", hash), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(oldHash)
	toks, err := pullapi.NewTokens(nil, file, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acc, ok := toks.Account(oldTok); !ok || acc != "acc_A" {
		t.Fatal("old token refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); toks.Watch(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	time.Sleep(20 * time.Millisecond) // a different mtime even on coarse clocks
	write(newHash)
	wait.Eventually(t, 5*time.Second, "the rotation picked up", func() bool {
		_, oldOK := toks.Account(oldTok)
		acc, newOK := toks.Account(newTok)
		return !oldOK && newOK && acc == "acc_A"
	})
	// A broken file keeps the tokens in force.
	if err := os.WriteFile(file, []byte("tokens:\n  - account: acc_A\n    sha256: nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok := toks.Account(newTok); !ok {
		t.Fatal("a broken tokens file revoked the working tokens")
	}
	if _, err := pullapi.LoadTokens(file); err == nil || !strings.Contains(err.Error(), "tokens.yaml:3") {
		t.Fatalf("broken tokens file error %v does not name the line", err)
	}
}

func TestDevTokensOnlyInDev(t *testing.T) {
	dev, _ := pullapi.NewTokens(nil, "", true, nil)
	if acc, ok := dev.Account("dev-acc_7"); !ok || acc != "acc_7" {
		t.Fatal("dev token refused in dev")
	}
	if _, ok := dev.Account("dev-"); ok {
		t.Fatal("empty dev account accepted")
	}
	prod, _ := pullapi.NewTokens(nil, "", false, nil)
	if _, ok := prod.Account("dev-acc_7"); ok {
		t.Fatal("dev token accepted outside dev")
	}
}

// Pages have a byte budget: large events fill a page only up to
// MaxPageBytes, an event larger than that comes alone, and a walk still
// gets every event once, in order. Before the budget, 100 events of 1 MB
// made a 100 MB page.
func TestPagesStayWithinTheirByteBudget(t *testing.T) {
	e := newEnv(t, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.Addr), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var want []ev
	for i, size := range []int{1500 << 10, 1500 << 10, 1500 << 10, 1500 << 10, 5 << 20, 1500 << 10, 1500 << 10, 10, 1500 << 10} {
		res := fmt.Sprintf("acc_A-lead-%d", i%2)
		seq := int64(i + 1)
		v := fmt.Appendf(nil, `{"event_id":"acc_A-%s-%d","timestamp":"2026-11-23T10:00:00Z","account_id":"acc_A","resource_id":%q,"sequence":%d,"event_type":"lead.updated","metadata":{"pad":%q}}`,
			res, seq, res, seq, strings.Repeat("p", size))
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(res), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev{ID: fmt.Sprintf("acc_A-%s-%d", res, seq), Account: "acc_A", Resource: res, Seq: seq})
	}
	url, _ := e.server(0)
	pos := "tail"
	var got []ev
	for range 100 {
		code, body, _ := get(t, url, e.secret["acc_A"], pos, 100)
		if code != http.StatusOK {
			t.Fatalf("%d %.200s", code, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > 1 && len(body) > pullapi.MaxPageBytes+64<<10 {
			t.Fatalf("a page of %d events is %d bytes, over the budget of %d", len(p.Items), len(body), pullapi.MaxPageBytes)
		}
		if len(body) > pullapi.MaxPageBody {
			t.Fatalf("a page of %d bytes, over what clients read", len(body))
		}
		for _, it := range p.Items {
			got = append(got, it.Data)
		}
		pos = p.Meta.Position
		if p.Meta.Top {
			break
		}
	}
	checkExactly(t, want, got)
}

// A client that gets a page larger than it reads asks for fewer events,
// down to one, instead of retrying the same request for ever.
func TestFollowShrinksItsPageInsteadOfLooping(t *testing.T) {
	var limits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limits = append(limits, r.URL.Query().Get("limit"))
		if r.URL.Query().Get("limit") != "3" {
			_, _ = w.Write(bytes.Repeat([]byte(" "), pullapi.MaxPageBody+1))
			return
		}
		_, _ = w.Write([]byte(`{"items":[{"data":{"event_id":"e1"},"meta":{}}],"meta":{"position":"p2","top":true,"count":1}}`))
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := pullapi.Follow(context.Background(), pullapi.FollowOptions{URL: srv.URL, Token: "t", Limit: 12, UntilTop: true, Out: &out,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil || strings.TrimSpace(out.String()) != `{"event_id":"e1"}` {
		t.Fatalf("err %v, printed %q", err, out.String())
	}
	if strings.Join(limits, ",") != "12,6,3" {
		t.Fatalf("limits asked: %v", limits)
	}
}

// An event nested 500,000 levels deep, or cut short, written to the events
// topic past the processor, is skipped without a recursive parse: the page
// comes back with the events around it.
func TestDeeplyNestedEventIsSkipped(t *testing.T) {
	e := newEnv(t, 1)
	deep := fmt.Appendf(nil, `{"event_id":"deep","timestamp":"2026-11-23T10:00:00Z","account_id":"acc_A","resource_id":"r","sequence":1,"event_type":"lead.updated","metadata":{"a":%s1%s}}`,
		strings.Repeat("[", 500000), strings.Repeat("]", 500000))
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.Addr), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cut := eventJSON("acc_A", "r", 3)
	cut = cut[:len(cut)-1]
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("r"), Value: deep}, &kgo.Record{Key: []byte("r"), Value: eventJSON("acc_A", "r", 2)},
		&kgo.Record{Key: []byte("r"), Value: cut}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	url, _ := e.server(0)
	got, _, top := walk(t, url, e.secret["acc_A"], "tail", 100, 10)
	if !top || len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("top %v, got %+v", top, got)
	}
}

// One token's flood of long polls is held to its limit: the rest get 429
// with Retry-After at once, and another account's request is answered
// while the flood waits at the head. Past the total limit every token gets
// 429.
func TestOneTokenCannotCrowdOutAnother(t *testing.T) {
	e := newEnv(t, 2)
	e.produce([]string{"acc_A", "acc_B"}, 2, 1, 1)
	url, _ := e.serverWith(pullapi.Options{Budget: 20 * time.Second, Limits: pullapi.Limits{PerToken: 4, Total: 6}})
	_, top, _ := walk(t, url, e.secret["acc_A"], "tail", 100, 10)

	// 20 long polls of A at the head: each waits out its 20 s budget.
	codes := make(chan int, 20)
	for range 20 {
		go func() {
			code, body, _ := get(t, url, e.secret["acc_A"], top, 100)
			if code == http.StatusTooManyRequests && !strings.Contains(string(body), "too_many_requests") {
				t.Errorf("429 body %s", body)
			}
			codes <- code
		}()
	}
	tooMany := 0
	for range 16 { // those over the limit are answered first, at once
		if c := <-codes; c == http.StatusTooManyRequests {
			tooMany++
		}
	}
	if tooMany != 16 {
		t.Fatalf("%d of the first 16 answers were 429", tooMany)
	}
	// B is still served while A's four polls wait.
	if p := getPage(t, url, e.secret["acc_B"], "tail", 100); len(p.Items) != 2 {
		t.Fatalf("B got %d items", len(p.Items))
	}
	// Two more long polls of C fill the total of 6; then D is refused. A
	// request with a bad limit probes the count without holding a place:
	// admitted, it is answered 400 at once; over the total, 429.
	for range 2 {
		go func() { code, _, _ := get(t, url, e.secret["acc_C"], "top", 100); codes <- code }()
	}
	deadline := time.Now().Add(15 * time.Second) // within the polls' 20 s budget
	for {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/stream?position=top&limit=x", nil)
		req.Header.Set("Authorization", "Bearer "+e.secret["acc_D"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") != "1" {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			break
		}
		if resp.StatusCode != http.StatusBadRequest || time.Now().After(deadline) {
			t.Fatalf("the total limit did not refuse D: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 6 {
		if c := <-codes; c == http.StatusTooManyRequests {
			t.Fatal("a request within the limits was refused")
		}
	}
}
