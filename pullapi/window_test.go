package pullapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/testsupport/wait"
)

// windowReady waits until the server's window follows every partition.
func (e *env) windowReady(partitions int) {
	e.t.Helper()
	wait.Eventually(e.t, 10*time.Second, "the window to follow every partition", func() bool { return e.srv.Stats().Partitions == partitions })
}

// Followers of events that arrived while the API ran are answered from
// its window, with no read from Kafka: each account sees exactly its own
// events, in order per resource, though two accounts share resource ids,
// and never an aborted transaction's.
func TestFollowersReadFromTheWindow(t *testing.T) {
	e := newEnv(t, 6)
	url, _ := e.server(0)
	e.windowReady(6)
	want := e.produce([]string{"acc_A", "acc_B"}, 30, 10, 1)
	shared := e.produceShared([]string{"acc_A", "acc_B"}, 20, 5)
	for acc, evs := range shared {
		want[acc] = append(want[acc], evs...)
	}
	abort(t, e, "acc_A", "acc_A-lead-0")
	more := e.produce([]string{"acc_A", "acc_B"}, 30, 1, 11)
	for acc, evs := range more {
		want[acc] = append(want[acc], evs...)
	}
	wait.Eventually(t, 10*time.Second, "the window to hold every event", func() bool {
		return e.srv.Stats().WindowEvents == int64(len(want["acc_A"])+len(want["acc_B"]))
	})
	for _, acc := range []string{"acc_A", "acc_B"} {
		got, _, top := walk(t, url, e.secret[acc], "tail", 37, 1000)
		if !top {
			t.Fatal("never reached top")
		}
		for _, g := range got {
			if g.Account != acc {
				t.Fatalf("account %s was served %+v", acc, g)
			}
		}
		checkExactly(t, want[acc], got)
	}
	if st := e.srv.Stats(); st.KafkaReads != 0 || st.WindowReads == 0 {
		t.Fatalf("reads: %+v; every one should have come from the window", st)
	}
}

// A window smaller than the stream: positions it no longer holds are read
// from Kafka, the rest from memory, and the walk is still exact.
func TestOlderPositionsReadFromKafka(t *testing.T) {
	e := newEnv(t, 6)
	url, _ := e.serverWith(pullapi.Options{WindowBytes: 600 << 10})
	e.windowReady(6)
	want := e.produce([]string{"acc_A", "acc_B", "acc_C"}, 100, 20, 1) // 6,000 events, about 1.3 MB with the window's overhead
	wait.Eventually(t, 10*time.Second, "the window to fill", func() bool {
		st := e.srv.Stats()
		return st.WindowBytes > 500<<10
	})
	got, _, top := walk(t, url, e.secret["acc_B"], "tail", 100, 1000)
	if !top {
		t.Fatal("never reached top")
	}
	checkExactly(t, want["acc_B"], got)
	st := e.srv.Stats()
	if st.KafkaReads == 0 || st.WindowReads == 0 || st.WindowBytes > 600<<10 {
		t.Fatalf("reads and size: %+v; want both sources, within 600 KiB", st)
	}
}

// produceShared writes rounds events for each of resources ids that every
// account uses: the same key, so the same partition, for different tenants.
func (e *env) produceShared(accounts []string, resources, rounds int) map[string][]ev {
	e.t.Helper()
	return e.produceNamed(accounts, resources, rounds, 1, func(_ string, i int) string { return fmt.Sprintf("shared-%d", i) })
}

// abort writes one event of acc in a transaction it aborts.
func abort(t *testing.T, e *env, acc, res string) {
	t.Helper()
	txn, err := kgo.NewClient(kgo.SeedBrokers(e.broker.Addr), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("aborter"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Key: []byte(res), Value: eventJSON(acc, res, 999)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
}

// An API process that starts after the events were written (a restart,
// followers moving over from another replica) reads back into its window
// what the first follower asked for: the next follower of those positions
// is answered from memory, and both walks are exact.
func TestWindowFillsBackwards(t *testing.T) {
	e := newEnv(t, 6)
	want := e.produce([]string{"acc_A", "acc_B", "acc_C"}, 50, 10, 1) // 1,500 events
	url, _ := e.server(0)
	e.windowReady(6)
	got, _, top := walk(t, url, e.secret["acc_A"], "tail", 100, 1000)
	if !top {
		t.Fatal("never reached top")
	}
	checkExactly(t, want["acc_A"], got)
	wait.Eventually(t, 10*time.Second, "the window to read back every partition", func() bool {
		return e.srv.Stats().WindowEvents == 1500
	})
	before := e.srv.Stats()
	got, _, top = walk(t, url, e.secret["acc_B"], "tail", 100, 1000)
	if !top {
		t.Fatal("never reached top")
	}
	checkExactly(t, want["acc_B"], got)
	if after := e.srv.Stats(); after.KafkaReads != before.KafkaReads {
		t.Fatalf("the second walk read Kafka %d times; the window held its events", after.KafkaReads-before.KafkaReads)
	}
}

// Top means nothing of the account is left: events written before a
// request are on its pages before one says top, though the window may not
// have fetched them yet when the request comes.
func TestTopCountsEventsWrittenBeforeTheRequest(t *testing.T) {
	e := newEnv(t, 6)
	url, _ := e.server(0)
	e.windowReady(6)
	_, pos, top := walk(t, url, e.secret["acc_A"], "tail", 100, 10)
	if !top {
		t.Fatal("no top")
	}
	for round := range 5 {
		// Several MiB at once: the window takes several fetches to
		// read them, and the walk starts while it is still behind.
		want := e.produce([]string{"acc_A"}, 5000, 1, int64(round+1))
		var got []ev
		got, pos, top = walk(t, url, e.secret["acc_A"], pos, 100, 1000)
		if !top || len(got) != len(want["acc_A"]) {
			t.Fatalf("round %d: %d of %d events before top (%v)", round, len(got), len(want["acc_A"]), top)
		}
	}
}
