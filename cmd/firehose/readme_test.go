package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/firehose/firehose/config"
)

// TestReadmeExamplesAreValid loads every YAML example of README.md as a
// config (adding a kafka section to fragments), so the documentation
// cannot drift from what the loader accepts.
func TestReadmeExamplesAreValid(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d yaml examples in README.md", len(blocks))
	}
	env := func(name string) (string, bool) {
		if strings.HasSuffix(name, "CONNECTION_STRING") {
			return "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=a2V5", true
		}
		if strings.HasSuffix(name, "_KEY") {
			return "0123456789abcdef0123456789abcdef0123456789abcdef", true
		}
		return "0123456789abcdef0123", true
	}
	topLevelKafka := regexp.MustCompile(`(?m)^kafka:`)
	for i, b := range blocks {
		doc := b[1]
		if !topLevelKafka.MatchString(doc) {
			doc = "kafka: {brokers: [\"127.0.0.1:9092\"]}\n" + doc
		}
		if _, err := config.Parse("README.md example", []byte(doc), config.Options{Lookup: env}); err != nil {
			t.Errorf("example %d is not a valid config:\n%v\n%s", i+1, err, b[1])
		}
	}
}
