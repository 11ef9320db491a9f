// Package kinesalite starts kinesalite, a Kinesis server that enforces the
// real API's limits, on loopback for tests. make test installs it with npm
// into .tools/kinesalite; serve.js starts it on 127.0.0.1 only, since its
// own command line binds every interface.
package kinesalite

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// thisFile is the path of this source file.
func thisFile() string {
	_, file, _, _ := runtime.Caller(0)
	return file
}

// root finds the module root from this file.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start runs kinesalite on a free port until the test ends and returns
// its endpoint (http://127.0.0.1:PORT).
func Start(t testing.TB) string {
	t.Helper()
	modules := filepath.Join(root(), ".tools", "kinesalite", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "kinesalite")); err != nil {
		t.Fatal("kinesalite is not installed; make test installs it (npm install kinesalite into .tools/kinesalite)")
	}
	cmd := exec.Command("node", filepath.Join(filepath.Dir(thisFile()), "serve.js"), "0")
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kinesalite: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
			}
		}
	}()
	select {
	case p := <-port:
		return fmt.Sprintf("http://127.0.0.1:%s", p)
	case <-time.After(15 * time.Second):
		t.Fatal("kinesalite did not start within 15s")
	}
	return ""
}
