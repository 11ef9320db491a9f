package firehosetest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const unpublished = "v0.0.0-00010101000000-000000000000"

// A user's suite in a module of its own, made as the README says: its
// "go get" lines, then its two examples (Start, and StartContainer where a
// container engine runs) as a test file, run with go test. It catches what
// only an outside module sees: a go.sum that lacks what StartContainer's
// image build needs, an example that no longer compiles.
func TestTheREADMEStepsFromAnOutsideModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a module of its own")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### Firehose in your own test suite")
	if !ok {
		t.Fatal("README.md has no section on firehosetest")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```(sh|go)\n(.*?)```").FindAllStringSubmatch(section, -1)
	var steps, code []string
	for _, b := range blocks {
		if b[1] == "sh" {
			steps = append(steps, b[2])
		} else {
			code = append(code, strings.Replace(b[2], `import "github.com/firehose/firehose/firehosetest"`, "", 1))
		}
	}
	if len(steps) == 0 || len(code) < 2 {
		t.Fatalf("README's section has %d sh and %d go blocks, want the go get lines and both examples", len(steps), len(code))
	}

	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The module as published: here, this checkout.
	write("go.mod", "module example.com/suite\n\ngo 1.26\n\nrequire github.com/firehose/firehose "+unpublished+"\n\nreplace github.com/firehose/firehose => "+root+"\n")
	write("suite_test.go", "package suite\n\nimport (\n\t\"testing\"\n\n\t\"github.com/firehose/firehose/firehosetest\"\n)\n"+strings.Join(code, "\n"))
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		// Everything is in the module cache already, as this module's
		// build put it there: a lookup on the proxy could only fail.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
	}
	for _, b := range steps {
		for _, line := range strings.Split(b, "\n") {
			line, _, _ = strings.Cut(line, "#")
			f := strings.Fields(line)
			for i, a := range f {
				// The version this checkout stands for, which the
				// proxy does not serve.
				if strings.HasPrefix(a, "github.com/firehose/firehose") {
					f[i] = a + "@" + unpublished
				}
			}
			if len(f) > 0 {
				run(f[0], f[1:]...)
			}
		}
	}
	// Without -mod=mod: go.sum must already hold what the build needs.
	cmd := exec.Command("go", "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the outside module: %v\n%s", err, out)
	}
	for _, name := range []string{"TestLeadsAreMaskedAndDelivered", "TestLeadsInAContainer"} {
		if !strings.Contains(string(out), "--- PASS: "+name) && !strings.Contains(string(out), "--- SKIP: "+name) {
			t.Errorf("%s did not run:\n%s", name, out)
		}
	}
	if os.Getenv("DOCKER_HOST") != "" && !strings.Contains(string(out), "--- PASS: TestLeadsInAContainer") {
		t.Errorf("a container engine is there, and the container example did not pass:\n%s", out)
	}
	t.Logf("%s", out)
}
