package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/testenv"
)

func line(i int) string {
	return fmt.Sprintf(`{"event_id":"e%d","timestamp":"2024-01-15T14:30:45.234Z","account_id":"a","resource_id":"lead_%d","sequence":%d,"event_type":"lead.created"}`, i, i%3, i)
}

func TestLinesValidatesKeysAndReportsLineNumbers(t *testing.T) {
	b := testenv.Start(t).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics("raw"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := b.CreateTopic("raw", 3, nil); err != nil {
		t.Fatal(err)
	}

	input := strings.Join([]string{
		line(1),
		"",
		`{"not":"an event"}`,
		line(2),
		"{broken",
		line(3) + "\r",
		`{"event_id":"big","pad":"` + strings.Repeat("x", 3000) + `"}`,
		line(4),
	}, "\n")
	var rejected []Rejection
	p := New(cl, Options{Topic: "raw", MaxEventBytes: 2048, OnReject: func(r Rejection) { rejected = append(rejected, r) }})
	if err := p.Lines(context.Background(), strings.NewReader(input), "in.ndjson"); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, r := range rejected {
		lines = append(lines, r.Line)
	}
	if len(lines) != 3 || lines[0] != 3 || lines[1] != 5 || lines[2] != 7 {
		t.Fatalf("rejected lines %v, want [3 5 7]: %v", lines, rejected)
	}
	if !strings.Contains(rejected[2].Error(), "in.ndjson:7: event is over the limit of 2048 bytes") {
		t.Fatalf("oversize message: %v", rejected[2])
	}
	if p.Progress.Sent.Load() != 4 || p.Progress.Rejected.Load() != 3 {
		t.Fatalf("sent %d rejected %d", p.Progress.Sent.Load(), p.Progress.Rejected.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < 4 && ctx.Err() == nil {
		got = append(got, cl.PollFetches(ctx).Records()...)
	}
	for _, r := range got {
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			t.Fatalf("produced a record that does not decode: %v", err)
		}
		if string(r.Key) != e.ResourceID {
			t.Fatalf("record keyed %q, resource %q", r.Key, e.ResourceID)
		}
	}
	if len(got) != 4 {
		t.Fatalf("consumed %d records, want 4", len(got))
	}
}

func TestStrictStopsAtFirstBadLine(t *testing.T) {
	b := testenv.Start(t).Broker
	if err := b.CreateTopic("raw", 3, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(cl, Options{Topic: "raw", Strict: true})
	err = p.Lines(context.Background(), strings.NewReader(line(1)+"\nnope\n"+line(2)+"\n"), "stdin")
	if !errors.Is(err, ErrStrict) || !strings.HasPrefix(err.Error(), "stdin:2:") {
		t.Fatalf("strict: %v", err)
	}
	if err := p.Finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Progress.Sent.Load() != 1 {
		t.Fatalf("sent %d before stopping, want 1", p.Progress.Sent.Load())
	}
}
