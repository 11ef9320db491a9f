// Package duckdb queries files with DuckDB, an independent reader of
// Parquet that Firehose does not share code with: make test installs its
// Node package (@duckdb/node-api, which ships the engine) into
// .tools/duckdb, and Query runs one SQL statement through it.
package duckdb

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Query runs sql and returns its rows, each column as DuckDB renders it in
// JSON (numbers as numbers where they fit, timestamps and big integers as
// strings).
func Query(t testing.TB, sql string) []map[string]any {
	t.Helper()
	modules := filepath.Join(here(), "..", "..", ".tools", "duckdb", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "@duckdb", "node-api")); err != nil {
		t.Fatal("DuckDB is not installed; make test installs it (npm install @duckdb/node-api into .tools/duckdb)")
	}
	cmd := exec.Command("node", filepath.Join(here(), "query.mjs"), sql)
	// An ES module resolves packages from its own folder up, not from
	// NODE_PATH: run it from a copy beside the modules.
	dir := filepath.Join(modules, "..")
	script, err := os.ReadFile(filepath.Join(here(), "query.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "query.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Args[1] = filepath.Join(dir, "query.mjs")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("duckdb printed no rows: %v\n%s", err, out.String())
	}
	return rows
}
