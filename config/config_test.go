package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/topology"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDevConfigLoads(t *testing.T) {
	c, err := Parse("dev.yaml", Dev(), Options{Lookup: env(map[string]string{"FIREHOSE_DATA_DIR": "/tmp/x"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Brokers[0] != "127.0.0.1:9092" || c.Connectors[0].Batch.MaxAge != 2*time.Second {
		t.Fatalf("dev config: %+v", c)
	}
	if c.Topology.Raw.Configs["retention.ms"] != topology.RetentionMS || c.Topology.State.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("topic defaults not applied: %+v", c.Topology)
	}
	if c.Connectors[0].Group != "firehose-connector-files" || c.Connectors[0].Topic != "events" {
		t.Fatalf("connector defaults: %+v", c.Connectors[0])
	}
	if c.Processor.MaxEventBytes != 1<<20 {
		t.Fatalf("1MiB parsed as %d", c.Processor.MaxEventBytes)
	}
}

func TestErrorsNameFileLineAndField(t *testing.T) {
	doc := `kafka:
  brokers: [localhost:9092]
  clinet_id: oops
topology:
  raw:
    partitions: six
processor:
  max_event_bytes: 12 parsecs
connectors:
  - name: a
    type: file
    batch:
      max_age: 1ms
      max_events: [1]
    compression: brotli
`
	_, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(nil)})
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		`f.yaml:3:3: kafka.clinet_id: unknown field "clinet_id" (did you mean "client_id"?)`,
		`f.yaml:6:17: topology.raw.partitions: must be an integer, got a string (six)`,
		`f.yaml:8:20: processor.max_event_bytes: must be a size such as 5MB or 1MiB, got "12 parsecs"`,
		`f.yaml:13:16: connectors[0].batch.max_age: must be at least 10ms, got 1ms`,
		`f.yaml:14:19: connectors[0].batch.max_events: must be an integer, got a list`,
		`f.yaml:15:18: connectors[0].compression: must be one of gzip, snappy, lz4, zstd, none, got "brotli"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	doc := "kafka:\n  brokers: [\"${HOST}:${PORT:-9092}\"]\n  sasl:\n    mechanism: PLAIN\n    username: u\n    password: ${SECRET}\napi:\n  listen: \"$${literal}\"\n"
	c, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(map[string]string{"HOST": "kafka", "SECRET": "p: w # not yaml"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Brokers[0] != "kafka:9092" || c.Kafka.SASL.Password != "p: w # not yaml" || c.API.Listen != "${literal}" {
		t.Fatalf("expansion wrong: %+v %+v", c.Kafka, c.API)
	}
	_, err = Parse("f.yaml", []byte("kafka:\n  brokers: [\"${NOPE}\"]\n"), Options{Lookup: env(nil)})
	if err == nil || !strings.Contains(err.Error(), "f.yaml:2:13: kafka.brokers[0]: environment variable NOPE is not set") {
		t.Fatalf("unset variable: %v", err)
	}
}

func TestEnvExpansionRetypesPlainScalars(t *testing.T) {
	doc := "kafka: {brokers: [\"h:1\"]}\ntopology:\n  raw:\n    partitions: ${P}\n"
	c, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(map[string]string{"P": "12"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Topology.Raw.Partitions != 12 {
		t.Fatalf("partitions %d", c.Topology.Raw.Partitions)
	}
}

func TestDestinationSection(t *testing.T) {
	doc := "kafka: {brokers: [\"h:1\"]}\nconnectors:\n  - name: a\n    type: file\n    file:\n      dri: /x\n  - name: b\n    type: file\n    s3: {}\n    file: {dir: /y}\n"
	_, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(nil)})
	got := err.Error()
	for _, want := range []string{
		`f.yaml:6:7: connectors[0].file.dri: unknown field "dri" (did you mean "dir"?)`,
		`connectors[1].s3: unknown field "s3"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	c, err := Parse("f.yaml", []byte("kafka: {brokers: [\"h:1\"]}\nconnectors:\n  - {name: a, type: file, file: {dir: /x}}\n"), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Connectors[0].Batch.MaxEvents != 100000 {
		t.Fatalf("the destination's batch default was not applied: %+v", c.Connectors[0].Batch)
	}
	if c.Connectors[0].Destination.(*file.Config).Dir != "/x" {
		t.Fatalf("destination not decoded: %+v", c.Connectors[0])
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse("f.yaml", []byte("kafka:\n  brokers: [a\n  x: {\n"), Options{Lookup: env(nil)})
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:") {
		t.Fatalf("syntax error without position: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Dev())
	f.Add([]byte("kafka: {brokers: [\"h:1\"]}\nconnectors: [{name: a, type: file}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("f.yaml", data, Options{Lookup: env(nil)})
	})
}

func TestPullAPITokensAndKeyAreChecked(t *testing.T) {
	doc := `kafka: {brokers: [localhost:9092]}
api:
  tokens:
    - account: acc_1
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    - sha256: "abc"
`
	_, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(nil)})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`f.yaml:6:7: api.tokens[1].account: required`,
		`f.yaml:6:15: api.tokens[1].sha256: must be the 64 hex digits`,
		`api.position_key: required when api.tokens or api.tokens_file is set`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	short := doc[:strings.Index(doc, "    - sha256")] + "  position_key: short\n"
	if _, err := Parse("f.yaml", []byte(short), Options{Lookup: env(nil)}); err == nil || !strings.Contains(err.Error(), "api.position_key: is 5 bytes; it must be at least 32") {
		t.Fatalf("short key: %v", err)
	}
}

func TestGroupMembershipSettings(t *testing.T) {
	c, err := Parse("f.yaml", []byte("kafka:\n  brokers: [localhost:9092]\n  instance_id: worker-3\n  session_timeout: 10s\n"), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.InstanceID != "worker-3" || c.Kafka.SessionTimeout != 10*time.Second || c.Kafka.RebalanceTimeout != kafkaclient.DefaultRebalanceTimeout {
		t.Fatalf("kafka section %+v", c.Kafka)
	}
	_, err = Parse("f.yaml", []byte("kafka:\n  brokers: [localhost:9092]\n  instance_id: \"worker 3/a\"\n  rebalance_timeout: 10ms\n"), Options{Lookup: env(nil)})
	for _, want := range []string{
		`f.yaml:3:16: kafka.instance_id: must be letters, digits, '.', '_' and '-' (at most 200), got "worker 3/a"`,
		`f.yaml:4:22: kafka.rebalance_timeout: must be at least 1s, got 10ms`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
}

func TestSASLMechanisms(t *testing.T) {
	for doc, want := range map[string]string{
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: OAUTHBEARER}\n":                           `kafka.sasl.token: OAUTHBEARER needs one of token and token_file`,
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: OAUTHBEARER, token: a, token_file: /t}\n": `kafka.sasl.token: OAUTHBEARER needs one of token and token_file`,
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: AWS_MSK_IAM, username: u}\n":              `kafka.sasl.mechanism: AWS_MSK_IAM takes its credentials from the AWS default chain`,
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: GSSAPI}\n":                                `must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM, got "GSSAPI"`,
	} {
		t.Run(doc, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(nil)})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", doc, err, want)
			}
		})
	}
	for _, doc := range []string{
		"kafka:\n  brokers: [k:9092]\n  rack: use1-az1\n  sasl: {mechanism: OAUTHBEARER, token_file: /var/run/token}\n",
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: AWS_MSK_IAM}\n",
	} {
		if _, err := Parse("f.yaml", []byte(doc), Options{Lookup: env(nil)}); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestTracingSection(t *testing.T) {
	c, err := Parse("f.yaml", []byte("kafka: {brokers: [k:9092]}\ntracing: {endpoint: \"http://otel:4318\"}\n"), Options{Lookup: env(nil)})
	if err != nil || c.Tracing.ServiceName != "firehose" || *c.Tracing.SampleRatio != 1 {
		t.Fatalf("%v %+v", err, c)
	}
	_, err = Parse("f.yaml", []byte("kafka: {brokers: [k:9092]}\ntracing: {endpoint: \"otel:4318\", sample_ratio: 2}\n"), Options{Lookup: env(nil)})
	for _, want := range []string{`tracing.endpoint: must be an OTLP/HTTP URL such as http://otel-collector:4318, got "otel:4318"`, `tracing.sample_ratio: must be from 0 to 1, got 2`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestSchemaRegistrySection(t *testing.T) {
	const base = "kafka: {brokers: [k:9092]}\n"
	c, err := Parse("f.yaml", []byte(base+"schema_registry: {url: \"https://sr:8081\", username: u, password: p}\ntopology:\n  raw: {encoding: avro-confluent}\n  events: {name: out, encoding: json-confluent}\n"), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Topology.Raw.Subject != "events.raw-value" || c.Topology.Events.Subject != "out-value" || !c.SchemaRegistry.IsRegister() || c.SchemaRegistry.Timeout != 10*time.Second {
		t.Fatalf("defaults: %+v %+v %+v", c.Topology.Raw, c.Topology.Events, c.SchemaRegistry)
	}
	for doc, want := range map[string]string{
		"topology:\n  raw: {encoding: avro-confluent}\n":                                   `f.yaml:3:19: topology.raw.encoding: avro-confluent needs schema_registry.url`,
		"topology:\n  dlq: {encoding: avro}\n":                                             `topology.dlq.encoding: is not configurable`,
		"topology:\n  events: {encoding: protobuf}\n":                                      `must be one of json, avro, avro-confluent, json-confluent, got "protobuf"`,
		"schema_registry: {url: \"https://u:hunter2@sr:8081\"}\n":                          `schema_registry.url: must not hold credentials (https://u:xxxxx@sr:8081)`,
		"schema_registry: {url: \"sr:8081\"}\n":                                            `schema_registry.url: must be an http:// or https:// URL with a host`,
		"schema_registry: {url: \"sr:8081?key=hunter2\"}\n":                                `schema_registry.url: must be an http:// or https:// URL with a host`,
		"schema_registry: {url: \"https://sr:8081/?api_key=hunter2\"}\n":                   `schema_registry.url: must not hold a query (https://sr:8081/?api_key=xxxxx)`,
		"schema_registry: {url: \"http://sr:8081\", username: u}\n":                        `schema_registry.password: username and password go together`,
		"schema_registry: {url: \"http://sr:8081\", username: u, password: p, token: t}\n": `schema_registry.token: use either a token or a username and password`,
	} {
		t.Run(doc, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(base+doc), Options{Lookup: env(nil)})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", doc, err, want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestProfilesSection(t *testing.T) {
	const base = "kafka: {brokers: [k:9092]}\n"
	c, err := Parse("f.yaml", []byte(base+"processor:\n  profiles:\n    event_types: [\"profile.*\"]\n    segments:\n      - {name: frequent_visitor, expr: 'properties.visits > 3'}\n"), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	pr := c.Processor.Profiles
	if pr.PropertiesField != "properties" || pr.CoalesceInterval != 2*time.Minute || pr.RestInterval != 2*time.Minute || pr.TTL != 720*time.Hour {
		t.Fatalf("defaults: %+v", pr)
	}
	for doc, want := range map[string]string{
		"    segments: [{name: x, expr: 'true'}]\n    event_types: []\n":                            `processor.profiles.event_types: segments need profile changes`,
		"    event_types: [\"[\"]\n":                                                                `processor.profiles.event_types[0]: must be a name or glob`,
		"    event_types: [p]\n    properties_field: metadata\n":                                    `"metadata" is a field of the event schema`,
		"    event_types: [p]\n    coalesce_interval: 10ms\n":                                       `processor.profiles.coalesce_interval: must be at least 100ms, got 10ms`,
		"    event_types: [p]\n    ttl: 1m\n":                                                       `processor.profiles.ttl: must be at least rest_interval (2m0s), got 1m0s`,
		"    event_types: [p]\n    segments: [{name: A B, expr: 'true'}]\n":                         `processor.profiles.segments[0].name: must be lower-case`,
		"    event_types: [p]\n    segments: [{name: a, expr: 'true'}, {name: a, expr: 'false'}]\n": `segment "a" is defined twice`,
		"    event_types: [p]\n    segments: [{name: a, expr: 'properties.visits +'}]\n":            `processor.profiles.segments[0].expr: unexpected token`,
		"    event_types: [p]\n    segments: [{name: a, expr: 'account_id'}]\n":                     `processor.profiles.segments[0].expr: expected bool, but got string`,
	} {
		t.Run(doc, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(base+"processor:\n  profiles:\n"+doc), Options{Lookup: env(nil)})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", doc, err, want)
			}
		})
	}
}

// A worker reads only what it runs: a connector's worker needs its own
// secrets, not another connector's, the mask key or the API's position
// key; and what it runs is still checked in full.
func TestScopeReadsOnlyWhatAProcessRuns(t *testing.T) {
	const doc = `kafka: {brokers: [k:9092]}
processor:
  group: proc
  mask:
    hash_key: ${MASK_KEY}
    rules: [{path: lead_data.email, strategy: hash}]
connectors:
  - name: a
    type: http
    http: {url: "https://a.example.com/in", bearer_token: "${A_TOKEN}"}
  - name: b
    type: http
    group: b-group
    http: {url: "https://b.example.com/in", bearer_token: "${B_TOKEN}"}
api:
  listen: ${LISTEN:-127.0.0.1:8080}
  position_key: ${POSITION_KEY}
  tokens: [{account: acc_1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
`
	only := func(vars ...string) LookupFunc {
		return func(k string) (string, bool) {
			if slices.Contains(vars, k) {
				return "0123456789abcdef0123456789abcdef0123456789", true
			}
			return "", false
		}
	}
	parse := func(scope *Scope, lookup LookupFunc) (*Config, error) {
		return Parse("f.yaml", []byte(doc), Options{Lookup: lookup, Scope: scope})
	}
	c, err := parse(&Scope{Connectors: []string{"a"}}, only("A_TOKEN"))
	if err != nil {
		t.Fatalf("connector a's worker with only its own secret: %v", err)
	}
	if c.Connectors[0].NotRun || !c.Connectors[1].NotRun || c.Connectors[1].Group != "b-group" || c.Processor.Group != "proc" || c.API.Listen != "127.0.0.1:8080" {
		t.Fatalf("scoped config: %+v", c)
	}
	_, err = parse(&Scope{Connectors: []string{"a"}}, only("B_TOKEN"))
	if err == nil || !strings.Contains(err.Error(), "f.yaml:10:") || !strings.Contains(err.Error(), "A_TOKEN is not set") {
		t.Fatalf("connector a's worker without its secret: %v", err)
	}
	if _, err := parse(&Scope{Connectors: []string{}}, only()); err != nil {
		t.Fatalf("status, replay: %v", err)
	}
	if _, err := parse(&Scope{Processor: true, Connectors: []string{}}, only()); err == nil || !strings.Contains(err.Error(), "MASK_KEY is not set") {
		t.Fatalf("the processor without its mask key: %v", err)
	}
	if _, err := parse(&Scope{API: true, Connectors: []string{}}, only()); err == nil || !strings.Contains(err.Error(), "POSITION_KEY is not set") {
		t.Fatalf("the API without its position key: %v", err)
	}
	if _, err := parse(nil, only("A_TOKEN", "B_TOKEN", "MASK_KEY")); err == nil || !strings.Contains(err.Error(), "POSITION_KEY is not set") {
		t.Fatalf("validate reads everything: %v", err)
	}
}

func TestEventsCompression(t *testing.T) {
	const base = "kafka: {brokers: [k:9092]}\n"
	c, err := Parse("f.yaml", []byte(base), Options{Lookup: env(nil)})
	if err != nil || c.Topology.Events.Compression != "snappy" {
		t.Fatalf("default %q, %v", c.Topology.Events.Compression, err)
	}
	for doc, want := range map[string]string{
		"topology:\n  events: {compression: brotli}\n": `topology.events.compression: must be one of snappy, lz4, zstd, gzip, none, got "brotli"`,
		"topology:\n  raw: {compression: zstd}\n":      `topology.raw.compression: is set on topology.events`,
	} {
		t.Run(doc, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(base+doc), Options{Lookup: env(nil)})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", doc, err, want)
			}
		})
	}
	if c, err := Parse("f.yaml", []byte(base+"topology:\n  events: {compression: zstd}\n"), Options{Lookup: env(nil)}); err != nil || c.Topology.Events.Compression != "zstd" {
		t.Fatalf("zstd: %v", err)
	}
}

// A few kilobytes of anchors that alias each other (a "billion laughs")
// are refused at once, saying why; aliases that repeat a value still work.
func TestAliasesThatMultiplyAreRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-anchors:\n  a0: &a0 {k0: v, k1: v, k2: v, k3: v, k4: v, k5: v, k6: v, k7: v, k8: v, k9: v}\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  a%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("kafka: {brokers: [k:9092]}\nconnectors:\n  - {name: f, type: file, file: {dir: /tmp}, x: *a8}\n")
	_, err := Parse("f.yaml", []byte(b.String()), Options{Lookup: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than 100000 values") {
		t.Fatalf("%v", err)
	}
	repeat := "kafka: {brokers: &b [k:9092]}\nschema_registry: {url: \"http://r\"}\nx-y: *b\n"
	if _, err := Parse("f.yaml", []byte(repeat), Options{Lookup: func(string) (string, bool) { return "", false }}); err != nil && strings.Contains(err.Error(), "aliases expand") {
		t.Fatalf("an alias that repeats a value: %v", err)
	}
}

// Parquet is for the object destinations, compressed inside the file
// (snappy unless set).
func TestParquetConnectors(t *testing.T) {
	c, err := Parse("f.yaml", []byte("kafka: {brokers: [\"h:1\"]}\nconnectors:\n  - {name: a, type: file, encoding: parquet, file: {dir: /x}}\n  - {name: b, type: s3, encoding: parquet, compression: zstd, s3: {bucket: b}}\n"), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Connectors[0].Compression != "snappy" || c.Connectors[1].Compression != "zstd" {
		t.Fatalf("compressions %q, %q", c.Connectors[0].Compression, c.Connectors[1].Compression)
	}
	_, err = Parse("f.yaml", []byte("kafka: {brokers: [\"h:1\"]}\nconnectors:\n  - name: hook\n    type: http\n    encoding: parquet\n    http: {url: \"http://x\"}\n"), Options{Lookup: env(nil)})
	if err == nil || !strings.Contains(err.Error(), "f.yaml:5:15: connectors[0].encoding: parquet is written by the object destinations (file, s3)") {
		t.Fatalf("parquet to a webhook: %v", err)
	}
}

// Promoted columns are checked where they are written.
func TestParquetColumnsAreChecked(t *testing.T) {
	_, err := Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: a
    type: file
    encoding: ndjson
    columns: [{name: price, path: metadata.price, type: double}]
    file: {dir: /x}
  - name: b
    type: file
    encoding: parquet
    columns:
      - {name: timestamp, path: metadata.t, type: long}
      - {name: n, path: metadata..n, type: int}
    file: {dir: /x}
`), Options{Lookup: env(nil)})
	for _, want := range []string{
		`f.yaml:6:14: connectors[0].columns: are Parquet columns: set encoding: parquet`,
		`connectors[1].columns[0].name: "timestamp" is already a column`,
		`connectors[1].columns[1].path: must be a dotted path such as metadata.price, got "metadata..n"`,
		`connectors[1].columns[1].type: must be one of string, long, double, boolean, got "int"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// on_error, rate_limit and max_in_flight: auto are read, defaulted and
// checked, a rule that can never match refused where it is written.
func TestDeliveryControl(t *testing.T) {
	c, err := Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: partner
    type: http
    http: {url: "http://x"}
    on_error:
      - {status: [404, 410], action: drop}
      - {status: [400, 422], action: stop}
      - {status: ["5xx"], action: retry}
      - {class: timeout, action: retry}
      - {class: permanent, action: dlq}
    rate_limit: {events_per_second: 1000, requests_per_second: 50, bytes_per_second: 10MB}
    max_in_flight: auto
  - name: stream
    type: kafka
    kafka: {brokers: ["h:2"], topic: out}
    on_error: [{code: MESSAGE_TOO_LARGE, action: drop}]
    max_in_flight: 4
`), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Connectors[0]
	if len(p.OnError) != 5 || p.OnError[0].Status[1] != "410" || p.OnError[3].Class[0] != "timeout" || p.OnError[4].Action != "dlq" {
		t.Fatalf("on_error: %+v", p.OnError)
	}
	if p.RateLimit.EventsPerSecond != 1000 || p.RateLimit.RequestsPerSecond != 50 || p.RateLimit.BytesPerSecond != 10_000_000 {
		t.Fatalf("rate_limit: %+v", p.RateLimit)
	}
	if p.MaxInFlight != connectors.InFlightAuto || p.MaxInFlightLimit != connectors.DefaultMaxInFlight {
		t.Fatalf("max_in_flight %d, limit %d", p.MaxInFlight, p.MaxInFlightLimit)
	}
	if s := c.Connectors[1]; s.MaxInFlight != 4 || s.MaxInFlightLimit != 0 || s.OnError[0].Code[0] != "MESSAGE_TOO_LARGE" {
		t.Fatalf("second connector: %+v", s)
	}

	_, err = Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: hook
    type: http
    http: {url: "http://x"}
    on_error:
      - {status: ["4xx"], action: dlq}
      - {status: [404], action: drop}
      - {status: [200], action: retry}
      - {class: slow, action: shrug}
      - {code: E42, action: drop}
    rate_limit: {events_per_second: -1}
    max_in_flight: lots
  - name: files
    type: file
    file: {dir: /x}
    on_error: [{status: [503], action: retry}, {class: throttled, action: drop}]
    max_in_flight: 8
    max_in_flight_limit: 64
`), Options{Lookup: env(nil)})
	for _, want := range []string{
		`f.yaml:8:9: connectors[0].on_error[1]: never matches: on_error[0] (status=4xx) matches every error it does`,
		`connectors[0].on_error[2].status: "200" is not an error status: a code from 300 to 599, or 3xx, 4xx or 5xx`,
		`connectors[0].on_error[3].class: must be one of timeout, throttled, connection, server, too_large, auth, rejected, permanent, retryable, got "slow"`,
		`connectors[0].on_error[3].action: must be one of retry, dlq, drop, stop, got "shrug"`,
		`connectors[0].on_error[4].code: never matches: this destination's errors have no error code of their own`,
		`connectors[0].rate_limit.events_per_second: must be a positive number, or 0 for no limit`,
		`f.yaml:13:20: connectors[0].max_in_flight: must be a number of batches or auto, got "lots"`,
		`connectors[1].on_error[0].status: never matches: this destination's errors have no HTTP status`,
		`connectors[1].on_error[1].class: never matches: this destination's errors are never throttled`,
		`connectors[1].max_in_flight_limit: bounds max_in_flight: auto; with max_in_flight 8, remove it`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// Record destinations' targets may be templates, checked where written.
func TestTargetTemplates(t *testing.T) {
	c, err := Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - {name: a, type: kafka, kafka: {brokers: ["h:2"], topic: "leads.{{event_type}}"}}
  - {name: b, type: kinesis, kinesis: {stream: "leads-{{account_id}}"}}
  - {name: c, type: pubsub, pubsub: {project: p, topic: "leads-{{event_type}}"}}
`), Options{Lookup: env(nil)})
	if err != nil || len(c.Connectors) != 3 {
		t.Fatalf("%v", err)
	}
	_, err = Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: a
    type: kafka
    kafka: {brokers: ["h:2"], topic: "leads.{{evnt_type}}"}
  - name: b
    type: kafka
    kafka: {brokers: ["h:2"], topic: "leads/all"}
  - name: c
    type: kinesis
    kinesis: {stream: "arn:aws:kinesis:us-east-1:1:stream/{{event_type}}"}
`), Options{Lookup: env(nil)})
	for _, want := range []string{
		`f.yaml:5:38: connectors[0].kafka.topic: unknown name {{evnt_type}}`,
		`f.yaml:8:38: connectors[1].kafka.topic: a Kafka topic name holds only letters, digits, '.', '_' and '-', not '/'`,
		`f.yaml:11:23: connectors[2].kinesis.stream: a template renders stream names, not ARNs`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// Transform steps are read in order and checked where written.
func TestTransformSteps(t *testing.T) {
	c, err := Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: crm
    type: http
    http: {url: "http://x"}
    transform:
      - select: [event_id, event_type, metadata.buyer_response.price]
      - rename: {event_type: type, event_id: id}
      - set: {price_cents: "metadata.buyer_response.price * 100"}
      - drop: [metadata]
`), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Connectors[0].Transform[1].Rename; len(r) != 2 || r[0].Key != "event_type" || r[1].Value != "id" {
		t.Fatalf("rename: %+v", r)
	}
	_, err = Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: crm
    type: http
    http: {url: "http://x"}
    transform:
      - set: {price_cents: "metadata.price *"}
      - {select: [a..b]}
  - name: lake
    type: file
    encoding: avro
    file: {dir: /x}
    transform: [{rename: {event_type: event-type}}]
  - name: typed
    type: file
    encoding: parquet
    file: {dir: /x}
    transform: [{drop: [metadata]}]
    columns: [{name: price, path: metadata.price, type: double}]
  - name: clash
    type: file
    encoding: parquet
    file: {dir: /x}
    transform: [{set: {extra: "1"}}]
`), Options{Lookup: env(nil)})
	for _, want := range []string{
		`f.yaml:7:28: connectors[0].transform[0].set.price_cents: "metadata.price *" does not compile`,
		`f.yaml:8:18: connectors[0].transform[1].select: must be a dotted path such as metadata.price, got "a..b"`,
		`f.yaml:13:16: connectors[1].transform: the transform makes a field "event-type", which Avro cannot name (letters, digits and _, not first a digit); rename it`,
		`f.yaml:19:14: connectors[2].columns: with a transform, the file's columns are the transform's fields`,
		`f.yaml:24:16: connectors[3].transform: the transform makes a field extra, the name of the column that holds an event's unknown fields; rename it`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// An Iceberg connector writes Parquet, partitions by the event's time, and
// its section's problems name their line and field.
func TestIcebergConnectors(t *testing.T) {
	c, err := Parse("f.yaml", []byte(`kafka: {brokers: ["h:1"]}
connectors:
  - name: lake
    type: iceberg
    iceberg:
      catalog: {type: sql, uri: "sqlite:///var/lib/firehose/catalog.db"}
      warehouse: s3://lake/warehouse
`), Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	lake := c.Connectors[0]
	ic := lake.Destination.(*iceberg.Config)
	if lake.Encoding != "parquet" || lake.Compression != "snappy" || lake.Batch.MaxBytes != 64<<20 || lake.Batch.MaxAge != 5*time.Minute ||
		ic.CommitInterval != time.Minute || ic.Namespace != "firehose" || ic.Table != "events" || !slices.Equal(ic.PartitionBy, []string{"day(timestamp)"}) {
		t.Fatalf("defaults: encoding %s, compression %s, batch %+v, section %+v", lake.Encoding, lake.Compression, lake.Batch, ic)
	}
	for _, tc := range []struct{ conn, want string }{
		{"encoding: ndjson\n    iceberg: {catalog: {type: sql, uri: \"sqlite:///c.db\"}, warehouse: \"file:///w\"}",
			"f.yaml:5:15: connectors[0].encoding: an iceberg table's data files are Parquet"},
		{"time_source: processing\n    iceberg: {catalog: {type: sql, uri: \"sqlite:///c.db\"}, warehouse: \"file:///w\"}",
			"f.yaml:5:18: connectors[0].time_source: an iceberg table partitions by the event's timestamp"},
		{"iceberg:\n      catalog: {type: sql, uri: \"sqlite:///c.db\"}\n      warehouse: \"file:///w\"\n      partition_by: [bucket(resource_id)]",
			"connectors[0].iceberg.partition_by: \"bucket(resource_id)\": bucket partitions are not supported yet"},
		{"iceberg:\n      catalog: {type: glue}",
			"connectors[0].iceberg.warehouse: required with a glue catalog"},
		{"iceberg:\n      catalog: {type: hive}",
			"connectors[0].iceberg.catalog.type: must be sql, rest or glue"},
		{"iceberg:\n      catalog: {type: sql, uri: \"postgres://x\"}",
			"connectors[0].iceberg.catalog.uri: a sql catalog is a SQLite file"},
		{"iceberg:\n      catalog: {type: rest, uri: \"https://cat\"}\n      commit_interval: 10ms",
			"connectors[0].iceberg.commit_interval: must be at least 1s"},
		{"transform: [{select: [event_id, event_type]}]\n    iceberg: {catalog: {type: sql, uri: \"sqlite:///c.db\"}, warehouse: \"file:///w\"}",
			"f.yaml:5:16: connectors[0].transform: day(timestamp): the transform leaves timestamp out of the table; select it too"},
		{"transform: [{set: {event_type: \"upper(event_type)\"}}]\n    iceberg: {catalog: {type: sql, uri: \"sqlite:///c.db\"}, warehouse: \"file:///w\", partition_by: [day(timestamp), event_type]}",
			"connectors[0].transform: identity(event_type): the transform changes event_type, but batches are partitioned by the event's own value"},
	} {
		_, err := Parse("f.yaml", []byte("kafka: {brokers: [\"h:1\"]}\nconnectors:\n  - name: lake\n    type: iceberg\n    "+tc.conn+"\n"), Options{Lookup: env(nil)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.conn, err, tc.want)
		}
	}
}
