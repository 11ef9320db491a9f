package topology

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/testsupport/embedded"
)

func newAdmin(t *testing.T) *kgo.Client {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func defaults() Config {
	var c Config
	c.Defaults()
	return c
}

func TestPlanApplyIsIdempotent(t *testing.T) {
	ctx := context.Background()
	adm := newAdmin(t)
	specs := Specs(defaults())

	p, err := MakePlan(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	var creates []string
	for _, c := range p.Changes {
		if c.Action != Create {
			t.Fatalf("fresh broker: unexpected %s on %s", c.Action, c.Spec.Name)
		}
		creates = append(creates, c.Spec.Name)
	}
	if strings.Join(creates, ",") != "events.raw,events,events.dlq,firehose.state" {
		t.Fatalf("creates %v", creates)
	}
	if err := p.Apply(ctx, adm); err != nil {
		t.Fatal(err)
	}

	p, err = MakePlan(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Print(&out)
	if !p.Empty() || !strings.Contains(out.String(), "nothing differs") {
		t.Fatalf("after apply, plan is not empty:\n%s", out.String())
	}

	rcs, err := kadm.NewClient(adm).DescribeTopicConfigs(ctx, "events.raw", "firehose.state")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Value != nil && (c.Key == "retention.ms" || c.Key == "cleanup.policy") {
				got[rc.Name+" "+c.Key] = *c.Value
			}
		}
	}
	if got["events.raw retention.ms"] != "259200000" || got["events.raw cleanup.policy"] != "delete" || got["firehose.state cleanup.policy"] != "compact" {
		t.Fatalf("topic configs on the cluster: %v", got)
	}
}

func TestPlanAltersDriftAndNeverLowersPartitions(t *testing.T) {
	ctx := context.Background()
	adm := newAdmin(t)
	top := defaults()
	if err := mustPlan(t, adm, Specs(top)).Apply(ctx, adm); err != nil {
		t.Fatal(err)
	}

	top.Events.Partitions = 12
	top.Raw.Partitions = 3
	top.DLQ.Configs["retention.ms"] = "3600000"
	p := mustPlan(t, adm, Specs(top))
	var out bytes.Buffer
	p.Print(&out)
	for _, want := range []string{
		"~ events: partitions 6 -> 12",
		"! events.raw: has 6 partitions, config says 3; partitions are never lowered",
		"~ events.dlq: retention.ms 259200000 -> 3600000",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	if err := p.Apply(ctx, adm); err != nil {
		t.Fatal(err)
	}
	td, err := kadm.NewClient(adm).ListTopics(ctx, "events", "events.raw")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td["events"].Partitions); n != 12 {
		t.Fatalf("events has %d partitions after apply", n)
	}
	if n := len(td["events.raw"].Partitions); n != 6 {
		t.Fatalf("events.raw was lowered to %d partitions", n)
	}
	if p := mustPlan(t, adm, Specs(top)); !p.Empty() {
		t.Fatalf("second apply would still change: %+v", p.Changes)
	}
}

func mustPlan(t *testing.T, adm *kgo.Client, specs []Spec) *Plan {
	t.Helper()
	p, err := MakePlan(context.Background(), adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
