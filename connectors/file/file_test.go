package file

import (
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
		c.cfg.Defaults()
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
