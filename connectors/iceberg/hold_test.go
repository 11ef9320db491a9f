package iceberg

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/testsupport/wait"
)

// testConfig is a table in a SQLite catalog and a local warehouse, with
// commits every second.
func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	c := Config{Catalog: Catalog{Type: "sql", URI: "sqlite://" + filepath.Join(dir, "catalog.db")},
		Warehouse: "file://" + filepath.Join(dir, "warehouse"), CommitInterval: time.Second}
	c.Defaults()
	return c
}

// down is the real catalog, unreachable while off is set.
type down struct {
	catalog.Catalog
	off atomic.Bool
}

var errDown = errors.New("dial tcp 10.0.0.1:8181: connect: connection refused")

func (d *down) LoadTable(ctx context.Context, ident table.Identifier) (*table.Table, error) {
	if d.off.Load() {
		return nil, errDown
	}
	return d.Catalog.LoadTable(ctx, ident)
}

// An unreachable catalog holds the batch (no error, so no retry budget is
// spent and nothing is dead-lettered), health says so, and the batch is
// committed once the catalog answers again.
func TestUnreachableCatalogHoldsDelivery(t *testing.T) {
	c := testConfig(t)
	s, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	d := &down{Catalog: s.cat}
	s.cat = d
	evs := connectortest.Events(9, 20)
	b1 := connectortest.MakeBatch(t, 0, 0, evs[:10], "parquet", "snappy")
	b2 := connectortest.MakeBatch(t, 0, 10, evs[10:], "parquet", "snappy")
	ctx := context.Background()
	if err := s.Deliver(ctx, b1); err != nil { // creates the table
		t.Fatal(err)
	}
	d.off.Store(true)
	res := make(chan error, 1)
	go func() { res <- s.Deliver(ctx, b2) }()
	wait.Eventually(t, time.Minute, "health to report the catalog", func() bool {
		err := s.Health()
		return err != nil && strings.Contains(err.Error(), "connection refused") && strings.Contains(err.Error(), "1 data files held")
	})
	select {
	case err := <-res:
		t.Fatalf("the delivery ended while the catalog was down: %v", err)
	default:
	}
	if s.stats.Failures.Load() < 2 {
		t.Fatalf("%d failed attempts: the commit is not being tried again", s.stats.Failures.Load())
	}
	d.off.Store(false)
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the batch was not committed after the catalog came back")
	}
	if err := s.Health(); err != nil {
		t.Fatalf("health after recovery: %v", err)
	}
	if n := s.stats.Events.Load(); n != 20 {
		t.Fatalf("%d events committed, want 20", n)
	}
}

// racing is the real catalog that lets another writer commit between the
// sink's load of the table and its commit, once.
type racing struct {
	catalog.Catalog
	once  sync.Once
	other func()
}

func (r *racing) LoadTable(ctx context.Context, ident table.Identifier) (*table.Table, error) {
	tbl, err := r.Catalog.LoadTable(ctx, ident)
	if err == nil {
		r.once.Do(r.other)
	}
	return tbl, err
}

// A commit that loses to another writer's is tried again on the table as
// it is now: both writers' batches are in it, once.
func TestConflictingCommitIsRetried(t *testing.T) {
	c := testConfig(t)
	open := func() *Sink {
		s, err := New(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	a, b := open(), open()
	evs := connectortest.Events(11, 30)
	ctx := context.Background()
	if err := a.Deliver(ctx, connectortest.MakeBatch(t, 0, 0, evs[:10], "parquet", "snappy")); err != nil {
		t.Fatal(err)
	}
	r := &racing{Catalog: a.cat}
	r.other = func() {
		b.Flush()
		if err := b.Deliver(ctx, connectortest.MakeBatch(t, 1, 0, evs[10:20], "parquet", "snappy")); err != nil {
			t.Error(err)
		}
	}
	a.cat = r
	a.Flush()
	if err := a.Deliver(ctx, connectortest.MakeBatch(t, 0, 10, evs[20:], "parquet", "snappy")); err != nil {
		t.Fatal(err)
	}
	if n := a.stats.Conflicts.Load(); n < 1 {
		t.Fatalf("%d conflicts: the other writer's commit did not come between", n)
	}
	tbl, err := a.cat.LoadTable(ctx, a.ident)
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.CurrentSnapshot().Summary.Properties["total-records"]; got != "30" {
		t.Fatalf("the table holds %s records, want 30", got)
	}
}
