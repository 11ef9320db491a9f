package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of stopping.
type recorder struct {
	testing.TB
	failed atomic.Bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.failed.Store(true)
	panic(r)
}

func run(fn func(t testing.TB)) (failed bool) {
	r := &recorder{}
	defer func() {
		if v := recover(); v != nil && v != r {
			panic(v)
		}
		failed = r.failed.Load()
	}()
	fn(r)
	return false
}

func TestEventuallyAndConsistently(t *testing.T) {
	start := time.Now()
	later := func() bool { return time.Since(start) > 100*time.Millisecond }
	if run(func(tb testing.TB) { Eventually(tb, 5*time.Second, "later", later) }) {
		t.Fatal("Eventually failed on a condition that comes true")
	}
	if !run(func(tb testing.TB) { Eventually(tb, 50*time.Millisecond, "never", func() bool { return false }) }) {
		t.Fatal("Eventually passed on a condition that never holds")
	}
	if run(func(tb testing.TB) { Consistently(tb, 100*time.Millisecond, "always", func() bool { return true }) }) {
		t.Fatal("Consistently failed on a condition that always holds")
	}
	n := 0
	if !run(func(tb testing.TB) {
		Consistently(tb, 5*time.Second, "until the third check", func() bool { n++; return n < 3 })
	}) {
		t.Fatal("Consistently passed on a condition that stopped holding")
	}
}
