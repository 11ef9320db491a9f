package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/testsupport/configenv"
)

// TestTailFollowsAndResumesFromPositionFile runs the API role from a config
// with a hashed token, and the tail command against it three times: from
// tail to top, again with nothing new, and again after new events.
func TestTailFollowsAndResumesFromPositionFile(t *testing.T) {
	token, hash := pullapi.NewToken()
	e := configenv.New(t, fmt.Sprintf(`api:
  listen: 127.0.0.1:0
  position_key: ${KEY}
  tokens:
    - {account: acc_1, sha256: %s}
`, hash), func(string) (string, bool) { return strings.Repeat("k", 40), true })
	cfg := e.Config
	cl := e.Client(kgo.DefaultProduceTopic(cfg.Topology.Events.Name))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			for _, acc := range []string{"acc_1", "acc_2"} {
				res := fmt.Sprintf("%s-lead-%d", acc, i%7)
				v := fmt.Sprintf(`{"event_id":"%s-%d","timestamp":"2026-11-23T10:00:00Z","account_id":%q,"resource_id":%q,"sequence":%d,"event_type":"lead.created"}`, acc, i, acc, res, i)
				if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(res), Value: []byte(v)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	produce(0, 150)

	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{Roles: []string{app.RoleAPI}, OnReady: func(a string) { addr <- a }})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case err := <-done:
		t.Fatal(err)
	}
	posFile := filepath.Join(t.TempDir(), "acc_1.pos")
	tail := func() []string {
		t.Helper()
		out, err := run(t, "tail", "--url", url, "--token", token, "--position-file", posFile, "--limit", "40", "--until-top")
		if err != nil {
			t.Fatalf("tail: %v\n%s", err, out)
		}
		return strings.Fields(out)
	}
	check := func(lines []string, from, to int) {
		t.Helper()
		if len(lines) != to-from {
			t.Fatalf("tail printed %d events, want %d", len(lines), to-from)
		}
		seen := map[string]bool{}
		for _, l := range lines {
			if !strings.Contains(l, `"account_id":"acc_1"`) {
				t.Fatalf("tail printed another account's event: %s", l)
			}
			seen[l[strings.Index(l, `"event_id":"`)+12:strings.Index(l, `","timestamp"`)]] = true
		}
		for i := from; i < to; i++ {
			if !seen[fmt.Sprintf("acc_1-%d", i)] {
				t.Fatalf("event acc_1-%d missing", i)
			}
		}
	}
	check(tail(), 0, 150)
	if saved, _ := os.ReadFile(posFile); len(saved) < 10 {
		t.Fatalf("position file holds %q", saved)
	}
	check(tail(), 0, 0) // at the head: nothing again
	produce(150, 170)
	check(tail(), 150, 170)

	out, err := run(t, "tail", "--url", url, "--token", "wrong", "--until-top")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong token: %v %s", err, out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTokenNewPrintsAConfigEntry(t *testing.T) {
	out, err := run(t, "token", "new", "--account", "acc_9")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(out)
	var token, hash string
	for i, f := range fields {
		if strings.HasPrefix(f, "fh_") {
			token = f
		}
		if f == "sha256:" {
			hash = fields[i+1]
		}
	}
	toks, err := pullapi.NewTokens([]pullapi.APIToken{{Account: "acc_9", SHA256: hash}}, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acc, ok := toks.Account(token); !ok || acc != "acc_9" {
		t.Fatalf("the printed entry does not grant the printed token:\n%s", out)
	}
}
