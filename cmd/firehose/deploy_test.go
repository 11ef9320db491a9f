package main

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/config"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/pullapi"
	"github.com/firehose/firehose/topology"
)

type composeFile struct {
	Services map[string]struct {
		Image       string
		Build       any
		Command     []string
		Entrypoint  []string
		Environment map[string]string
		Ports       []string
		Volumes     []string
		DependsOn   any `yaml:"depends_on"`
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(false)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// mounted returns the host path mounted at a container path.
func mounted(volumes []string, at string) string {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == at {
			return parts[0]
		}
	}
	return ""
}

// TestComposeIsPinnedAndWired keeps docker-compose.yml runnable: every
// image is pinned by version, the configs it mounts validate, and each
// service points at the others by the names and ports they serve.
func TestComposeIsPinnedAndWired(t *testing.T) {
	var c composeFile
	readYAML(t, "../../docker-compose.yml", &c)
	pinned := regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+\.[0-9]+(\.[0-9]+)?$`)
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
			continue
		}
		if s.Build != nil {
			continue // built here: firehose:local
		}
		if !pinned.MatchString(s.Image) {
			t.Errorf("service %s: image %q is not pinned by version", name, s.Image)
		}
	}

	// The Firehose config: it validates, its broker and S3 endpoint are
	// services, on the ports they listen on.
	env := func(k string) (string, bool) {
		if k == "FIREHOSE_POSITION_KEY" {
			return strings.Repeat("k", 48), true
		}
		return "", false
	}
	fh := c.Services["firehose"]
	if got := strings.Join(fh.Command, " "); got != "run -c /etc/firehose/firehose.yaml --role all" {
		t.Fatalf("firehose service runs %q", got)
	}
	cfgDir := mounted(fh.Volumes, "/etc/firehose")
	if cfgDir != "./deploy/compose" {
		t.Fatalf("firehose mounts %q at /etc/firehose", cfgDir)
	}
	cfg, err := config.Load("../../deploy/compose/firehose.yaml", config.Options{Lookup: env})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pullapi.LoadTokens("../../deploy/compose/tokens.yaml"); err != nil {
		t.Fatal(err)
	}
	kafka := c.Services["kafka"]
	if !slices.Equal(cfg.Kafka.Brokers, []string{"kafka:9092"}) || !strings.Contains(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://kafka:9092") {
		t.Errorf("brokers %v, kafka advertises %q", cfg.Kafka.Brokers, kafka.Environment["KAFKA_ADVERTISED_LISTENERS"])
	}
	// The host listener: advertised as localhost on a published port.
	if !strings.Contains(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"], "HOST://localhost:29092") || !slices.Contains(kafka.Ports, "29092:29092") ||
		!strings.Contains(kafka.Environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], "HOST:PLAINTEXT") {
		t.Errorf("kafka has no listener for the host: %+v", kafka)
	}
	s3cfg := cfg.Connectors[0].Destination.(*s3dest.Config)
	u, _ := url.Parse(s3cfg.Endpoint)
	s3 := c.Services[u.Hostname()]
	if s3.Image == "" || !strings.Contains(strings.Join(s3.Command, " "), "--port :"+u.Port()) || !strings.Contains(strings.Join(s3.Command, " "), "--access "+fh.Environment["AWS_ACCESS_KEY_ID"]) {
		t.Errorf("S3 endpoint %s is not the s3 service %+v", s3cfg.Endpoint, s3)
	}
	if mb := strings.Join(c.Services["make-bucket"].Entrypoint, " "); !strings.Contains(mb, "s3://"+s3cfg.Bucket) || !strings.Contains(mb, "http://"+u.Host) {
		t.Errorf("make-bucket does not create %s at %s: %s", s3cfg.Bucket, u.Host, mb)
	}
	if !strings.HasSuffix(cfg.API.Listen, ":8080") || !slices.Contains(fh.Ports, "8080:8080") {
		t.Errorf("api.listen %s, ports %v", cfg.API.Listen, fh.Ports)
	}

	// Prometheus scrapes Firehose where it listens, with the alert rules.
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "../../deploy/compose/prometheus.yml", &prom)
	// /metrics is on the admin listener, which is not published to the
	// host.
	if !strings.HasSuffix(cfg.API.AdminListen, ":9091") || slices.ContainsFunc(fh.Ports, func(p string) bool { return strings.HasSuffix(p, ":9091") }) {
		t.Errorf("api.admin_listen %q, published ports %v: /metrics must stay off the host", cfg.API.AdminListen, fh.Ports)
	}
	if len(prom.ScrapeConfigs) == 0 || !slices.Contains(prom.ScrapeConfigs[0].StaticConfigs[0].Targets, "firehose:9091") {
		t.Errorf("prometheus scrapes %+v", prom.ScrapeConfigs)
	}
	pv := c.Services["prometheus"].Volumes
	if mounted(pv, "/etc/prometheus/prometheus.yml") != "./deploy/compose/prometheus.yml" || mounted(pv, "/etc/prometheus/"+prom.RuleFiles[0]) != "./deploy/prometheus/alerts.yml" {
		t.Errorf("prometheus mounts %v, rules %v", pv, prom.RuleFiles)
	}

	// Grafana: the datasource is that Prometheus, the dashboard provisioned
	// from where it is mounted.
	g := c.Services["grafana"]
	var ds struct {
		Datasources []struct{ Type, URL string } `yaml:"datasources"`
	}
	readYAML(t, "../../"+strings.TrimPrefix(mounted(g.Volumes, "/etc/grafana/provisioning/datasources/firehose.yml"), "./"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" || !slices.Contains(c.Services["prometheus"].Ports, "9090:9090") {
		t.Errorf("grafana datasources %+v", ds)
	}
	var dash struct {
		Providers []struct {
			Options struct{ Path string }
		}
	}
	readYAML(t, "../../"+strings.TrimPrefix(mounted(g.Volumes, "/etc/grafana/provisioning/dashboards/firehose.yml"), "./"), &dash)
	if len(dash.Providers) != 1 || mounted(g.Volumes, dash.Providers[0].Options.Path+"/firehose.json") != "./deploy/grafana/firehose.json" {
		t.Errorf("grafana dashboards %+v from %v", dash, g.Volumes)
	}

	// The host's config reaches Kafka through the host listener.
	host, err := config.Load("../../deploy/compose/host.yaml", config.Options{Lookup: env})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(host.Kafka.Brokers, []string{"localhost:29092"}) {
		t.Errorf("host config reaches Kafka at %v", host.Kafka.Brokers)
	}
	for _, pair := range [][2]topology.Topic{{host.Topology.Raw, cfg.Topology.Raw}, {host.Topology.Events, cfg.Topology.Events}, {host.Topology.DLQ, cfg.Topology.DLQ}, {host.Topology.State, cfg.Topology.State}} {
		if pair[0].Name != pair[1].Name || pair[0].Partitions != pair[1].Partitions {
			t.Errorf("host config topic %s/%d, compose %s/%d", pair[0].Name, pair[0].Partitions, pair[1].Name, pair[1].Partitions)
		}
	}
}
