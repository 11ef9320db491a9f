// Package file is the local-file destination: each batch becomes one file
// under a directory, written atomically (temporary file, fsync, rename,
// fsync of the directory), so a reader never sees a partial file and a
// replay of the same offsets replaces the file instead of adding one.
package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the file section of a connector.
type Config struct {
	// Dir is the root directory; created if missing. Required.
	Dir string `yaml:"dir"`
	// Path is the template of the subdirectory of each batch, e.g.
	// events/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/.
	// Default: {{topic}}/.
	Path string `yaml:"path"`
	// Mode is the permission of new files; default 0640 (events may hold
	// personal data: no access for others). Directories get 0750.
	Mode os.FileMode `yaml:"mode"`
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.Path == "" {
		c.Path = "{{topic}}/"
	}
	if c.Mode == 0 {
		c.Mode = 0o640
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, yamlconf.Errorf("dir", "required: the directory files are written under"))
	}
	if _, err := connectors.ParseTemplate(c.Path); err != nil {
		errs = append(errs, yamlconf.Errorf("path", "%v", err))
	} else if strings.HasPrefix(c.Path, "/") || strings.Contains(c.Path, "..") {
		errs = append(errs, yamlconf.Errorf("path", "must be relative to dir and must not contain .."))
	}
	return errors.Join(errs...)
}

// Sink writes batches as files.
type Sink struct {
	cfg Config
}

// New returns a file sink; it creates Dir.
func New(cfg Config) (*Sink, error) {
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("file destination: %w", err)
	}
	return &Sink{cfg: cfg}, nil
}

// Deliver writes b.Body to Dir/b.Key atomically and durably.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final := filepath.Join(s.cfg.Dir, filepath.FromSlash(b.Key))
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return classify(fmt.Errorf("deliver batch %s: %w", b.ID, err))
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := writeSync(tmp, b.Body, s.cfg.Mode); err != nil {
		_ = os.Remove(tmp)
		return classify(fmt.Errorf("deliver batch %s to %s: %w", b.ID, final, err))
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return classify(fmt.Errorf("deliver batch %s to %s: %w", b.ID, final, err))
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("deliver batch %s: sync %s: %w", b.ID, dir, err)
	}
	return nil
}

// classify marks errors that no retry can fix as permanent: a name too
// long for the file system (a long literal in the path template), a path
// through a file. Others (a full disk, permissions being fixed) are
// retried.
func classify(err error) error {
	if errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ENOTDIR) {
		return connectors.Permanent(err, "")
	}
	return err
}

// Close implements connectors.Sink; the file sink holds nothing open.
func (s *Sink) Close(context.Context) error { return nil }

func writeSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PathTemplate tells the runtime how to split and name batches.
func (s *Sink) PathTemplate() string { return s.cfg.Path }
