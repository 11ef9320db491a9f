package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/internal/httpserver"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// A group held in a rebalance past the stall limit (here a member's rejoin
// never reaches the broker) turns /healthz unhealthy with the group, its
// state and its members named; once the rebalance completes it is healthy
// again.
func TestWatchdogReportsAGroupStuckInARebalance(t *testing.T) {
	b := testenv.Start(t).Broker
	admCl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(context.Background(), 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	member := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"),
			kgo.SessionTimeout(30*time.Second), kgo.RebalanceTimeout(60*time.Second), kgo.HeartbeatInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for !cl.PollFetches(context.Background()).IsClientClosed() {
			}
		}()
		return cl
	}
	stable := func() bool {
		d, err := adm.DescribeGroups(context.Background(), "g")
		return err == nil && d["g"].State == "Stable"
	}
	a := member()
	defer a.Close()
	wait.Eventually(t, time.Minute, "the first member to join", stable)

	// Hold the first member's rejoin, so the broker waits for it.
	aID, _ := a.GroupMetadata()
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	b.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		if kreq.(*kmsg.JoinGroupRequest).MemberID == aID {
			b.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	c := member()
	defer c.Close()

	wd := newGroupWatchdog(adm, []string{"g"}, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv, err := httpserver.Listen("127.0.0.1:0", nil, wd.Health, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx) }()
	go func() { _ = wd.Run(ctx) }()
	healthz := func() (int, string) {
		resp, err := http.Get("http://" + srv.Addr() + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	var body string
	wait.Eventually(t, time.Minute, "the watchdog to report the stuck group", func() bool {
		var code int
		code, body = healthz()
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "group g has been PreparingRebalance for") || !strings.Contains(body, "members:") {
		t.Fatalf("/healthz said %q", body)
	}
	if code, body := get(srv.Addr(), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: group g has been PreparingRebalance") {
		t.Fatalf("/readyz said %d %q while the group was stuck", code, body)
	}
	close(release)
	wait.Eventually(t, time.Minute, "healthy and ready again once the rebalance completes", func() bool {
		code, _ := healthz()
		ready, _ := get(srv.Addr(), "/readyz")
		return code == http.StatusOK && ready == http.StatusOK
	})
}

func get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
