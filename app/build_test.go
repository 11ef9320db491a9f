package app_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/testsupport/configenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// goroutines returns the stacks of the running goroutines by id.
func goroutines() map[string]string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	out := map[string]string{}
	for _, g := range strings.Split(b.String(), "\n\n") {
		if m := regexp.MustCompile(`^goroutine (\d+) `).FindStringSubmatch(g); m != nil {
			out[m[1]] = g
		}
	}
	return out
}

// started lists the goroutines not in before, but for the broker's and
// the tests' own. A goroutine not yet scheduled shows only its entry
// (errgroup's, say), so every new one counts.
func started(before map[string]string) []string {
	var out []string
	for id, stack := range goroutines() {
		if _, ok := before[id]; ok || strings.Contains(stack, "testing.tRunner") || strings.Contains(stack, "franz-go/pkg/kfake") {
			continue
		}
		out = append(out, stack)
	}
	return out
}

// A process that cannot be built returns its error with nothing of it
// running: the processor, whose goroutine used to start before the
// connectors' sinks were built, is not started, and the listener bound is
// released.
func TestABuildErrorLeavesNothingRunning(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := configenv.New(t, fmt.Sprintf(`api: {listen: "127.0.0.1:0"}
connectors:
  - name: files
    type: file
    file: {dir: %q}
  - name: good
    type: file
    file: {dir: %q}
`, filepath.Join(blocker, "out"), t.TempDir()), nil)
	for _, tc := range []struct {
		name string
		o    app.Options
		want string
	}{
		{"an unbuildable sink", app.Options{}, "file destination"},
		{"an unknown --connector", app.Options{Connectors: []string{"good", "nope"}}, "--connector nope: no connector of that name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := app.Run(ctx, e.Config, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run returned %v, want an error with %q", err, tc.want)
			}
			wait.Eventually(t, 10*time.Second, "what Run started has stopped", func() bool {
				left := started(before)
				if len(left) > 0 {
					t.Logf("%d goroutines left; the first:\n%s", len(left), left[0])
				}
				return len(left) == 0
			})
		})
	}
}
