package app

import (
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/firehose/firehose/config"
)

// Memory model. Firehose's live heap is, roughly, a base (the Kafka
// clients' fetch and produce buffers, the processor's transaction, the
// pull API) plus what each connector holds: its open and undelivered
// batches, capped by max_buffered_bytes, and their bodies being encoded.
// Go's collector lets the heap grow to twice the live heap before it runs,
// so without a limit the resident size is two to three times the live
// heap. `firehose run` therefore sets a soft memory limit
// (runtime/debug.SetMemoryLimit), which makes the collector run earlier as
// the heap nears it (never failing an allocation):
//
//   - memory_limit from the config, when set;
//   - else MemoryBase plus 1.5 x the max_buffered_bytes of every connector
//     the process runs (352 MiB with one connector at the 64 MiB default),
//     plus 1.5 x api.window_bytes when it serves the pull API (384 MiB
//     more at the 256 MiB default);
//   - and never above 90 % of the container's memory limit (cgroup), so
//     the collector works before the kernel kills the process.
//
// GOMEMLIMIT in the environment replaces all of this.
const MemoryBase = 256 << 20

// MemoryLimit returns the soft memory limit for a process running o with
// cfg, and what it was derived from; cgroupMax is the container's memory
// limit (0: none).
func MemoryLimit(cfg *config.Config, o Options, cgroupMax int64) (int64, string) {
	limit, source := int64(cfg.MemoryLimit), "memory_limit"
	if limit <= 0 {
		limit, source = MemoryBase, "256 MiB, 1.5 x max_buffered_bytes of each connector run and 1.5 x the pull API's window_bytes"
		if o.has(RoleAPI) && cfg.API.Listen != "off" && cfg.API.PullEnabled() {
			limit += int64(cfg.API.WindowBytes) * 3 / 2
		}
		if o.has(RoleConnector) {
			for _, c := range cfg.Connectors {
				if c.IsEnabled() && !c.NotRun && (len(o.Connectors) == 0 || slices.Contains(o.Connectors, c.Name)) {
					limit += int64(c.MaxBufferedBytes) * 3 / 2
				}
			}
		}
	}
	if cgroupMax > 0 && cgroupMax/10*9 < limit {
		limit, source = cgroupMax/10*9, "90% of the container's memory limit"
	}
	return limit, source
}

// CgroupMemoryMax reads the memory limit of the process's cgroup (v2, then
// v1), or 0 when there is none.
func CgroupMemoryMax() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "unlimited"
			return 0
		}
		return n
	}
	return 0
}
