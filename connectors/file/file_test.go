package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	connectortest.Run(t, connectortest.Target{
		New: func(t *testing.T) connectors.Sink {
			cfg := Config{Dir: dir}
			cfg.Defaults()
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Fetch: func(t *testing.T, b *connectors.Batch) []byte {
			data, err := os.ReadFile(filepath.Join(dir, b.Key))
			if err != nil {
				t.Fatal(err)
			}
			return data
		},
	})
	// No temporary file is left behind.
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "dir: required"},
		{Config{Dir: "/x", Path: "{{nope}}/"}, "unknown name {{nope}}"},
		{Config{Dir: "/x", Path: "../escape/"}, "must not contain .."},
	} {
		t.Run(c.want, func(t *testing.T) {
			c.cfg.Defaults()
			if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
			}
		})
	}
}

// A name the file system refuses as too long is a permanent error (no
// retry makes it shorter), and files and directories are closed to others
// by default: events may hold personal data.
func TestLongNamesArePermanentAndFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir}
	cfg.Defaults()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	evs := connectortest.EventsOver(5, 2, 4)
	b := connectortest.MakeBatch(t, 0, 0, evs, "ndjson", "none")
	b.Key = strings.Repeat("x", 300) + "/" + b.Key
	if err := s.Deliver(context.Background(), b); !connectors.IsPermanent(err) {
		t.Fatalf("a 300-byte name: %v, want a permanent error", err)
	}
	b = connectortest.MakeBatch(t, 0, 0, evs, "ndjson", "none")
	b.Key = "acc%2FB/" + b.Key
	if err := s.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{filepath.Join(dir, "acc%2FB"): 0o750, filepath.Join(dir, "acc%2FB", b.Key[len("acc%2FB/"):]): 0o640} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&^want != 0 {
			t.Errorf("%s has mode %v, want at most %v", path, st.Mode().Perm(), want)
		}
	}
}
