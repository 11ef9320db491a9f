package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/app/metrics"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/processor"
	"github.com/firehose/firehose/testsupport/testenv"
)

// TestDashboardAndAlertsUseExportedMetrics fails when a panel or an alert
// names a metric no Firehose process exports, e.g. after a rename.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	b := testenv.Start(t).Broker
	s := metrics.New()
	s.Processor(new(processor.Stats))
	s.Connector("c", new(connectors.Stats))
	s.Observer("c")
	s.Iceberg("lake", new(iceberg.Stats))
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), s.KafkaHooks("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s.Lag(cl, []string{"g"}, nil)
	if err := cl.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	fams, err := s.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"firehose_consumer_lag": true} // present once a group has commits
	for _, f := range fams {
		known[f.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[f.GetName()+suffix] = true
		}
	}

	var exprs []string
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	raw, err := os.ReadFile("../../deploy/grafana/firehose.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	alerts, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(alerts))
	name := regexp.MustCompile(`firehose_[a-z_]+`)
	n := 0
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			if strings.HasPrefix(m, "firehose_metadata") {
				continue
			}
			n++
			if !known[m] {
				t.Errorf("%s is used but not exported", m)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d metric references found; the parse is broken", n)
	}
}
