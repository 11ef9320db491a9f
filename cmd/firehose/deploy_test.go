package main

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/internal/config"
)

// TestDeployFilesAreValid keeps the container setup in step with the
// config: the compose config must load, and the compose file must be YAML
// whose firehose service runs that config.
func TestDeployFilesAreValid(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "FIREHOSE_POSITION_KEY" {
			return strings.Repeat("k", 48), true
		}
		return "", false
	}
	if _, err := config.Load("../../deploy/compose/firehose.yaml", config.Options{Lookup: env, Destinations: destinations.Registry{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := config.LoadTokens("../../deploy/compose/tokens.yaml"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command []string
		}
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(compose.Services["firehose"].Command, " "); got != "run -c /etc/firehose/firehose.yaml --role all" {
		t.Fatalf("firehose service runs %q", got)
	}
}
