package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firehose/firehose/testsupport/testenv"
)

// run executes the CLI with args and returns stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "firehose.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTopologyPlanThenApply(t *testing.T) {
	b := testenv.Start(t).Broker
	cfg := writeConfig(t, "kafka:\n  brokers: [\""+b.Addr+"\"]\n")

	out, err := run(t, "topology", "plan", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "+ create "); n != 4 {
		t.Fatalf("plan on a fresh broker lists %d topics to create, want 4:\n%s", n, out)
	}
	if out, err = run(t, "topology", "apply", "-c", cfg); err != nil || !strings.Contains(out, "applied: the cluster now matches the config") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = run(t, "topology", "plan", "-c", cfg)
	if err != nil || strings.TrimSpace(out) != "nothing differs: the cluster matches the config" {
		t.Fatalf("plan after apply: %v\n%s", err, out)
	}
}

func TestValidateReportsTypoAndWrongTypeWithLines(t *testing.T) {
	cfg := writeConfig(t, `kafka:
  brokers: ["127.0.0.1:9092"]
connectors:
  - name: archive
    type: file
    bacth:
      max_events: 10
    file:
      dir: /tmp/out
  - name: hooks
    type: file
    batch:
      max_events: lots
    file: {dir: /tmp/out2}
`)
	// validate prints to stderr; capture it through a pipe.
	r, w, _ := os.Pipe()
	stderr := os.Stderr
	os.Stderr = w
	_, err := run(t, "validate", "-c", cfg)
	w.Close()
	os.Stderr = stderr
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("validate exit: %v", err)
	}
	got := buf.String()
	for _, want := range []string{
		cfg + `:6:5: connectors[0].bacth: unknown field "bacth" (did you mean "batch"?)`,
		cfg + `:13:19: connectors[1].batch.max_events: must be an integer, got a string (lots)`,
		"2 problem(s) in the config",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("validate output lacks %q:\n%s", want, got)
		}
	}
}

func TestValidateAcceptsTheEmbeddedConfig(t *testing.T) {
	out, err := run(t, "validate")
	if err != nil || !strings.Contains(out, "embedded dev config is valid") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestEverySubcommandHasHelp(t *testing.T) {
	for _, args := range [][]string{{"dev"}, {"run"}, {"produce"}, {"topology", "plan"}, {"topology", "apply"}, {"validate"}, {"tail"}, {"token", "new"}, {"replay"}, {"status"}, {"dlq", "list"}, {"dlq", "show"}, {"dlq", "redrive"}} {
		out, err := run(t, append(args, "--help")...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("%v --help: %v\n%s", args, err, out)
		}
	}
}

// plan --detailed-exitcode tells CI whether the cluster drifted (2) or
// matches (0); apply raises a partition count only when told to, after
// saying what that moves.
func TestTopologyDriftExitCodeAndPartitionIncrease(t *testing.T) {
	b := testenv.Start(t).Broker
	six := writeConfig(t, "kafka:\n  brokers: [\""+b.Addr+"\"]\n")
	var ee exitError
	if _, err := run(t, "topology", "plan", "--detailed-exitcode", "-c", six); !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("plan on a fresh broker: %v, want exit 2", err)
	}
	if out, err := run(t, "topology", "apply", "-c", six); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := run(t, "topology", "plan", "--detailed-exitcode", "-c", six); err != nil {
		t.Fatalf("plan after apply: %v, want exit 0", err)
	}
	eight := writeConfig(t, "kafka:\n  brokers: [\""+b.Addr+"\"]\ntopology:\n  events: {partitions: 8}\n")
	out, err := run(t, "topology", "apply", "-c", eight)
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, "not applied: raising partitions moves keys to other partitions (events 6 -> 8)") {
		t.Fatalf("apply raising partitions without the flag: %v\n%s", err, out)
	}
	if out, err := run(t, "topology", "apply", "--allow-partition-increase", "-c", eight); err != nil || !strings.Contains(out, "applied: the cluster now matches the config") {
		t.Fatalf("apply with --allow-partition-increase: %v\n%s", err, out)
	}
}

// run never falls back to the embedded dev config: without -c or
// FIREHOSE_CONFIG it says how to get one, and FIREHOSE_CONFIG is read.
func TestRunNeedsAConfig(t *testing.T) {
	t.Setenv("FIREHOSE_CONFIG", "")
	if _, err := run(t, "run"); err == nil || !strings.Contains(err.Error(), "run needs a config: pass -c FILE or set FIREHOSE_CONFIG") {
		t.Fatalf("run without a config: %v", err)
	}
	bad := writeConfig(t, "kafka:\n  brokers: []\n")
	t.Setenv("FIREHOSE_CONFIG", bad)
	var ee exitError
	if _, err := run(t, "run"); !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("run with FIREHOSE_CONFIG naming an invalid file: %v, want its problems (exit 2)", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "firehose ") || !strings.Contains(out, "revision ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	if flag, err := run(t, "--version"); err != nil || flag != out {
		t.Fatalf("--version: %v %q, want %q", err, flag, out)
	}
}
