package processor

import (
	"encoding/binary"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/firehose/firehose/internal/heartbeat"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/wait"
)

// While the schema registry cannot answer (503), the processor holds the
// values it cannot read, and its loop does not count the wait as coming
// round: the heartbeat goes stale, so /healthz fails after
// api.stall_timeout instead of reporting a stopped processor as alive.
// Once the registry answers, the values are processed.
func TestRegistryOutageIsNotProgress(t *testing.T) {
	e := newEnv(t, "")
	fake := srfake.New()
	t.Cleanup(fake.Close)
	var down atomic.Bool
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if down.Load() {
			http.Error(w, `{"error_code":50301,"message":"down"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.CreateSchema(t.Context(), "events.raw-value", sr.Schema{Schema: schemas.AvroSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := schemas.NewRegistry(cl, nil).Codec(t.Context(), schemas.EncodingAvroConfluent, "", true, true)
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	beat := heartbeat.New("the processor")
	r := e.start("p1", func(o *Options) { o.In = reader; o.Beat = beat })

	ev := generatorEvent("lead_1")
	ev.Extra = nil
	body, err := schemas.Avro{}.Append(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	value := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID)), body[10:]...)
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.Broker.Addr), kgo.DefaultProduceTopic(e.cfg.Topology.Raw.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(t.Context(), &kgo.Record{Key: []byte(ev.ResourceID), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The loop reaches the value and waits on the registry: its beat
	// stops while nothing is processed.
	wait.Eventually(t, 30*time.Second, "the processor's beat to stop while the registry is down", func() bool { return beat.Since(time.Now()) >= 3*time.Second })
	if n := r.p.Stats().In.Load(); n != 0 {
		t.Fatalf("%d records processed while the registry was down", n)
	}
	down.Store(false)
	waitIn(t, 1, r)
	if beat.Since(time.Now()) > 3*time.Second {
		t.Fatal("the beat did not come back with the registry")
	}
}
