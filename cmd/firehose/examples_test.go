package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file in examples/ passes firehose validate, with its environment
// variables set as a deployment would set them.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for k, v := range map[string]string{
		"KAFKA_BROKERS":               "kafka-1:9092",
		"KAFKA_PASSWORD":              "s3cr3t-password",
		"GCP_PROJECT":                 "my-project",
		"EVENTHUBS_CONNECTION_STRING": "Endpoint=sb://my-cdp.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=a2V5",
		"FIREHOSE_POSITION_KEY":       "0123456789abcdef0123456789abcdef0123456789abcdef",
	} {
		t.Setenv(k, v)
	}
	for _, f := range files {
		out, err := run(t, "validate", "-c", f)
		if err != nil || !strings.Contains(out, "is valid") {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
		// /metrics and pprof never on a public address: an example
		// that listens on every interface keeps them on loopback.
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), "listen: 0.0.0.0") && !strings.Contains(string(data), "admin_listen: 127.0.0.1:") {
			t.Errorf("%s listens on 0.0.0.0 with /metrics there: set api.admin_listen to a loopback address", f)
		}
	}
	// And the check is not vacuous: a broken example fails.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, _ := os.ReadFile(files[0])
	broken := strings.Replace(string(data), "coalesce_interval: 2m", "coalesce_interval: soon", 1)
	if broken == string(data) {
		t.Fatalf("%s has no coalesce_interval to break", files[0])
	}
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "validate", "-c", bad); err == nil {
		t.Errorf("a broken example validated:\n%s", out)
	}
}

// A record destination takes no encoding, compression or avro_codec: each
// event is one record of JSON. Setting one is an error, not ignored.
func TestRecordDestinationsRefuseBatchOptions(t *testing.T) {
	p := writeConfig(t, `kafka: {brokers: ["127.0.0.1:9092"]}
connectors:
  - name: mirror
    type: kafka
    compression: gzip
    encoding: avro
    kafka: {brokers: ["other:9092"], topic: t}
  - name: lake
    type: file
    compression: zstd
    file: {dir: /tmp/x}
`)
	_, err := loadConfig(p, nil)
	for _, want := range []string{
		"connectors[0].compression: a kafka connector writes one record per event, as JSON: it takes no compression",
		"connectors[0].encoding: a kafka connector writes one record per event, as JSON: it takes no encoding",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "connectors[1]") {
		t.Errorf("the file connector's compression was refused: %v", err)
	}
}

// run's --listen and --admin-listen override the config and are checked
// like it.
func TestRunListenFlagsAreChecked(t *testing.T) {
	p := writeConfig(t, "kafka: {brokers: [\"127.0.0.1:1\"]}\n")
	_, err := run(t, "run", "-c", p, "--listen", "127.0.0.1:18080", "--admin-listen", "127.0.0.1:18080")
	if err == nil {
		t.Fatal("run started with the admin listener on the API's address")
	}
}
