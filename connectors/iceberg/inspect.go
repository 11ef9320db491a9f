package iceberg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/firehose/firehose/ops"
)

// Inspect reads the table of a connector from its catalog: the current
// snapshot and, from every snapshot's summary, the offset after the last
// range the connector committed, per partition of topic. A catalog that
// cannot be read is reported in Error, not returned.
func Inspect(ctx context.Context, cfg Config, connector, topic string) *ops.TableStatus {
	st := &ops.TableStatus{Table: cfg.Namespace + "." + cfg.Table}
	cat, err := openCatalog(ctx, cfg)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	if c, ok := cat.(interface{ Close() error }); ok {
		defer c.Close()
	}
	tbl, err := cat.LoadTable(ctx, []string{cfg.Namespace, cfg.Table})
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return st // created on the first delivery
	}
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Location = tbl.Location()
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return st
	}
	st.Snapshot = snap.SnapshotID
	at := time.UnixMilli(snap.TimestampMs).UTC()
	st.LastCommit = &at
	if snap.Summary != nil {
		st.Records, _ = strconv.ParseInt(snap.Summary.Properties["total-records"], 10, 64)
		st.Files, _ = strconv.ParseInt(snap.Summary.Properties["total-data-files"], 10, 64)
	}
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary == nil {
			continue
		}
		for k, v := range s.Summary.Properties {
			conn, t, p, ranges, ok := ParseOffsets(k, v)
			if !ok || conn != connector || t != topic {
				continue
			}
			for _, r := range ranges {
				if st.Next == nil {
					st.Next = map[int32]int64{}
				}
				st.Next[p] = max(st.Next[p], r[1]+1)
			}
		}
	}
	return st
}

// Orphans lists the files under the table's location that no snapshot
// references and that are older than olderThan, and deletes them when
// del is set (iceberg-go's orphan cleanup).
func Orphans(ctx context.Context, cfg Config, olderThan time.Duration, del bool) ([]table.OrphanFile, error) {
	cat, err := openCatalog(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if c, ok := cat.(interface{ Close() error }); ok {
		defer c.Close()
	}
	tbl, err := cat.LoadTable(ctx, []string{cfg.Namespace, cfg.Table})
	if err != nil {
		return nil, fmt.Errorf("load table %s.%s: %w", cfg.Namespace, cfg.Table, err)
	}
	res, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(olderThan), table.WithDryRun(!del))
	if err != nil {
		return nil, fmt.Errorf("orphans of %s.%s: %w", cfg.Namespace, cfg.Table, err)
	}
	return res.OrphanFiles, nil
}
