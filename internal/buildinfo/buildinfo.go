// Package buildinfo says which firehose binary is running: its version,
// VCS revision and Go version, as stamped at build.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version and Revision are stamped by make build (-ldflags -X
// github.com/firehose/firehose/internal/buildinfo.Version=…, from git
// describe and git rev-parse). Otherwise Version is the main module's
// version as the Go toolchain stamped it, or "(devel)", and Revision the
// VCS revision the toolchain stamped, or "unknown".
var (
	Version  = ""
	Revision = ""
)

// Info is what a binary knows of its build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"` // VCS commit, "unknown" when not stamped
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified"` // built from a checkout with uncommitted changes
	GoVersion string `json:"go_version"`
}

// Read returns the running binary's build information.
func Read() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if i.Version == "" {
			i.Version = "(devel)"
		}
		return i
	}
	if i.Version == "" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			if Revision == "" {
				i.Revision = kv.Value
			}
		case "vcs.time":
			i.Time = kv.Value
		case "vcs.modified":
			i.Modified = kv.Value == "true"
		}
	}
	return i
}
