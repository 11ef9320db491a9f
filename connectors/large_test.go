package connectors_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/file"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/testenv"
	"github.com/firehose/firehose/testsupport/wait"
)

// heapPeak samples the live heap (as the last collection found it) until
// stop is called, and returns the highest.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// A warehouse-sized connector: batches of up to 128 MiB, closed by a
// 15-minute age, over 6 partitions and half a million events (about 290
// MB of JSON, four times max_buffered_bytes). Open batches pack their
// records instead of being sealed early, so each partition ends in one
// object at shutdown, every event in it once and in order; and the live
// heap grows by no more than the README's Memory section allows:
// max_buffered_bytes, plus the Kafka client's fetch buffers and the
// encoding under way (memoryBeyondBuffers). Before packing, the cap sealed
// the largest batches as they grew: dozens of objects of a few MiB.
func TestWarehouseBatchesAtBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("several hundred thousand events")
	}
	n := 500_000
	if s := os.Getenv("FIREHOSE_LARGE_EVENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	const partitions = 6
	br := testenv.Start(t).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.DefaultProduceTopic("events"), kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		// Batches of 256 KiB, some 2.5 MB decompressed: what the fetches
		// hold, in the base of the README's bound, stays small beside
		// what the connector holds, which this test measures.
		kgo.ProducerBatchMaxBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	testenv.CreateTopics(t, cl, map[string]int32{"events": partitions, "events.dlq": 1})
	// Produced a slice at a time: the test keeps no events, only their
	// count and bytes.
	g := generator.New(5, 2000)
	g.DuplicateRate = 0
	raw := 0
	for done := 0; done < n; {
		recs := make([]*kgo.Record, 0, 10_000)
		for ; len(recs) < cap(recs) && done < n; done++ {
			e := g.Next()
			v, _ := schemas.JSON{}.Append(nil, e)
			raw += len(v)
			recs = append(recs, &kgo.Record{Key: []byte(e.ResourceID), Value: v})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()

	dir := t.TempDir()
	fc := file.Config{Dir: dir}
	fc.Defaults()
	sink, err := file.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	c := connectors.Config{Name: "lake", Topic: "events", Group: "lake", Encoding: "ndjson", Compression: "gzip",
		Batch: connectors.Bounds{MaxEvents: 10_000_000, MaxBytes: 128 << 20, MaxAge: 15 * time.Minute}}
	c.Defaults()
	w, err := connectors.New(connectors.Options{Connector: c, DLQTopic: "events.dlq", EventsEncoding: "json", Sink: sink,
		Kafka: []kgo.Opt{kgo.SeedBrokers(br.Addr)}, ShutdownTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := heapNow()
	peak := heapPeak()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	wait.Eventually(t, 10*time.Minute, "every event consumed", func() bool { return w.Stats().Consumed.Load() >= int64(n) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	grew := int64(peak()) - int64(base)
	t.Logf("%d events, %d MB of JSON over %d partitions; heap grew by %d MiB at most (max_buffered_bytes %d MiB)",
		n, raw>>20, partitions, grew>>20, c.MaxBufferedBytes>>20)

	objects, events := 0, 0
	seen := make(map[string]struct{}, n)
	var last map[string]int64
	eachStored(t, dir, func(p string, i int, e *schemas.Event) error {
		if i == 0 {
			objects++
			last = map[string]int64{}
		}
		// Objects are named <topic>+<partition>+<first offset>: each holds
		// one partition's events, each resource's in sequence order.
		part := strings.Split(filepath.Base(p), "+")[1]
		if e.Sequence <= last[e.ResourceID] {
			return fmt.Errorf("%s: %s sequence %d after %d", p, e.ResourceID, e.Sequence, last[e.ResourceID])
		}
		last[e.ResourceID] = e.Sequence
		meta := string(e.Extra.Get(connectors.MetadataKey))
		if !strings.Contains(meta, `"sequence":`+strconv.Itoa(i)+`,`) || !strings.Contains(meta, "-events-"+part+"-") {
			return fmt.Errorf("%s line %d: firehose_metadata %s", p, i+1, meta)
		}
		if _, dup := seen[e.EventID]; dup {
			return fmt.Errorf("%s: event %s twice", p, e.EventID)
		}
		seen[e.EventID] = struct{}{}
		events++
		return nil
	})
	if events != n || objects != partitions {
		t.Fatalf("%d events in %d objects; want %d in one object per partition (%d)", events, objects, n, partitions)
	}
	if bound := int64(c.MaxBufferedBytes) + memoryBeyondBuffers; grew > bound {
		t.Fatalf("the heap grew by %d MiB for %d MB of events, more than the %d MiB the README allows", grew>>20, raw>>20, bound>>20)
	}
}

// memoryBeyondBuffers is what a connector holds besides
// max_buffered_bytes, in the base of the README's Memory section, with
// Kafka's default fetch sizes: fetch responses and the record batches
// decompressed from them (up to some 64 MiB here), and per core a pack
// being encoded with its body.
const memoryBeyondBuffers = 112 << 20

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
