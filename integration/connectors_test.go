package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	s3dest "github.com/firehose/firehose/connectors/s3"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
	"github.com/firehose/firehose/testsupport/kinesalite"
	"github.com/firehose/firehose/testsupport/versitygw"
	"github.com/firehose/firehose/testsupport/wait"
)

// produceEvents writes events to the events topic as the processor does
// (keyed by resource), skipping the processor so a test sees only the
// connectors.
func produceEvents(t *testing.T, cfg *config.Config, evs []*schemas.Event) {
	t.Helper()
	cl := client(t, cfg, kgo.DefaultProduceTopic(cfg.Topology.Events.Name), kgo.ProducerBatchMaxBytes(8<<20))
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		b, _ := schemas.JSON{}.Append(nil, e)
		recs[i] = &kgo.Record{Key: []byte(e.ResourceID), Value: b}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// listObjects returns every key under prefix.
func listObjects(t *testing.T, srv *versitygw.Server, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func getObject(t *testing.T, srv *versitygw.Server, bucket, key string) []byte {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var keyRe = regexp.MustCompile(`^(ndjson|json|avro|parquet)-(none|gzip|snappy|lz4|zstd)/events/year=(\d{4})/month=(\d\d)/day=(\d\d)/hour=(\d\d)/flow=([a-z0-9_]+)/events\+(\d+)\+(\d{20})\.(ndjson|json|avro|parquet)(\.gz|\.sz|\.lz4|\.zst)?$`)

func TestEveryEncodingAndCompressionThroughS3(t *testing.T) {
	b := startBroker(t)
	srv := versitygw.Start(t)
	srv.Bucket(t, "lake")
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "kafka: {brokers: [\"%s\"]}\nprocessor: {enabled: false}\napi: {listen: \"off\"}\nconnectors:\n", b.Addr)
	for _, enc := range connectortest.Encodings {
		for _, comp := range connectortest.Compressions {
			fmt.Fprintf(&yaml, `  - name: %[1]s-%[2]s
    type: s3
    encoding: %[1]s
    compression: %[2]s
    batch: {max_events: 400, max_age: 500ms}
    s3:
      bucket: lake
      key: "%[1]s-%[2]s/{{topic}}/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/flow={{flow_id}}/"
      endpoint: %[3]s
      path_style: true
      region: us-east-1
      access_key_id: %[4]s
      secret_access_key: ${S3_SECRET}
`, enc, comp, srv.Endpoint, srv.Access)
		}
	}
	cfg := loadConfig(t, yaml.String(), map[string]string{"S3_SECRET": srv.Secret})
	applyTopology(t, cfg)
	evs := generator.Unique(11, 100, 3000)
	produceEvents(t, cfg, evs)
	runApp(t, cfg, app.Options{})

	for _, enc := range connectortest.Encodings {
		for _, comp := range connectortest.Compressions {
			prefix := enc + "-" + comp + "/"
			var got []connectortest.Delivered
			wait.Eventually(t, 60*time.Second, prefix+" holds every event", func() bool {
				got = got[:0]
				for _, k := range listObjects(t, srv, "lake", prefix) {
					m := keyRe.FindStringSubmatch(k)
					if m == nil {
						t.Fatalf("key %s does not follow the template", k)
					}
					ds, err := connectortest.Decode(getObject(t, srv, "lake", k), enc, comp)
					if err != nil {
						t.Fatalf("%s: %v", k, err)
					}
					for _, d := range ds {
						ts := d.Event.Timestamp
						if m[7] != d.Event.FlowID || m[3] != strconv.Itoa(ts.Year()) || m[6] != fmt.Sprintf("%02d", ts.Hour()) {
							t.Fatalf("event %s (flow %s, %s) is in %s", d.Event.EventID, d.Event.FlowID, ts, k)
						}
					}
					got = append(got, ds...)
				}
				return len(got) >= len(evs)
			})
			checkOncePerResourceInOrder(t, prefix, evs, got)
		}
	}
}

// checkOncePerResourceInOrder: every event exactly once, and within each
// resource in the order sent (objects of a partition listed by offset,
// which their names sort by).
func checkOncePerResourceInOrder(t *testing.T, what string, sent []*schemas.Event, got []connectortest.Delivered) {
	t.Helper()
	count := map[string]int{}
	byRes := map[string][]int64{}
	for _, d := range got {
		count[resourceKey(d.Event)]++
		byRes[d.Event.ResourceID] = append(byRes[d.Event.ResourceID], d.Event.Sequence)
	}
	for _, e := range sent {
		if count[resourceKey(e)] != 1 {
			t.Fatalf("%s: %s delivered %d times", what, resourceKey(e), count[resourceKey(e)])
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("%s: %d delivered, %d sent", what, len(got), len(sent))
	}
	for r, seqs := range byRes {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("%s: %s out of order: %v", what, r, seqs)
			}
		}
	}
}

// scripted is a webhook whose answers depend on how many times it has
// seen a batch, and which checks on every request that the connector's
// committed offset has not passed the batch it is still delivering.
type scripted struct {
	t       *testing.T
	adm     *kadm.Client
	group   string
	mu      sync.Mutex
	seen    map[string]int
	batches []string          // ids in order of first arrival
	ok      map[string][]byte // acknowledged bodies
	script  map[int][]int     // arrival index -> statuses of its attempts, then 200
	ahead   atomic.Int64
}

// batchRe reads the partition and first offset from a batch id
// (connectors.BatchID).
var batchRe = regexp.MustCompile(`-(\d+)-(\d+)-\d+-[0-9a-f]{16}$`)

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("Idempotency-Key")
	m := batchRe.FindStringSubmatch(id)
	part, _ := strconv.Atoi(m[1])
	first, _ := strconv.ParseInt(m[2], 10, 64)
	if offs, err := s.adm.FetchOffsets(context.Background(), s.group); err == nil {
		if o, ok := offs.Lookup("events", int32(part)); ok && o.At > first {
			s.ahead.Add(1) // committed past a batch not yet acknowledged
		}
	}
	s.mu.Lock()
	n := s.seen[id]
	if n == 0 {
		s.batches = append(s.batches, id)
	}
	s.seen[id]++
	idx := len(s.batches) - 1
	for i, b := range s.batches {
		if b == id {
			idx = i
		}
	}
	statuses := s.script[idx]
	s.mu.Unlock()
	status := http.StatusOK
	if n < len(statuses) {
		status = statuses[n]
	} else if len(statuses) > 0 && statuses[len(statuses)-1] == http.StatusBadRequest {
		status = http.StatusBadRequest
	}
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", status)
	case http.StatusBadRequest:
		http.Error(w, `{"error":"field lead_data.zip is not accepted"}`, status)
	case http.StatusOK:
		s.mu.Lock()
		s.ok[id] = body
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "boom", status)
	}
}

func TestWebhookRetriesThrottlingAndRejection(t *testing.T) {
	b := startBroker(t)
	cfg0 := loadConfig(t, "kafka: {brokers: [\""+b.Addr+"\"]}\n", nil)
	adm := kadm.NewClient(client(t, cfg0))
	hook := &scripted{t: t, adm: adm, group: "firehose-connector-hook", seen: map[string]int{}, ok: map[string][]byte{},
		script: map[int][]int{0: {500, 500, 500}, 1: {429}, 2: {400}}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: hook
    type: http
    batch: {max_events: 50, max_age: 200ms}
    retry: {max_attempts: 5, initial_backoff: 50ms, max_backoff: 200ms}
    http:
      url: %s/events
`, b.Addr, srv.URL), nil)
	applyTopology(t, cfg)
	evs := generator.Unique(12, 60, 1200)
	produceEvents(t, cfg, evs)
	runApp(t, cfg, app.Options{})

	var rejected string
	wait.Eventually(t, 60*time.Second, "every batch acknowledged or rejected", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		n := 0
		for _, body := range hook.ok {
			ds, err := connectortest.Decode(body, "ndjson", "none")
			if err != nil {
				t.Fatal(err)
			}
			n += len(ds)
		}
		if len(hook.batches) > 2 {
			rejected = hook.batches[2]
		}
		return rejected != "" && n >= len(evs)-50
	})
	hook.mu.Lock()
	if hook.seen[hook.batches[0]] != 4 || hook.seen[hook.batches[1]] != 2 {
		t.Errorf("attempts: first batch %d (want 4: three 500s, then 200), second %d (want 2: 429, then 200)", hook.seen[hook.batches[0]], hook.seen[hook.batches[1]])
	}
	// In order of arrival: a partition's batches arrive one after another.
	var got []connectortest.Delivered
	for _, id := range hook.batches {
		if body, ok := hook.ok[id]; ok {
			ds, _ := connectortest.Decode(body, "ndjson", "none")
			got = append(got, ds...)
		}
	}
	hook.mu.Unlock()

	// The rejected batch is in the DLQ with the response; everything else
	// arrived once, in order.
	dead := consumeAll(t, cfg, cfg.Topology.DLQ.Name, 1, 20*time.Second)
	var deadEvents []*schemas.Event
	for _, r := range dead {
		if dlq.Header(r, dlq.HeaderStage) != "connector:hook" || dlq.Header(r, dlq.HeaderClass) != "permanent" ||
			!strings.Contains(dlq.Header(r, dlq.HeaderResponse), `HTTP 400: {"error":"field lead_data.zip is not accepted"}`) {
			t.Fatalf("dead letter headers: %v", r.Headers)
		}
		e, err := schemas.JSON{}.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		deadEvents = append(deadEvents, e)
	}
	var sent []*schemas.Event
	deadKeys := map[string]bool{}
	for _, e := range deadEvents {
		deadKeys[resourceKey(e)] = true
	}
	for _, e := range evs {
		if !deadKeys[resourceKey(e)] {
			sent = append(sent, e)
		}
	}
	if len(deadKeys) == 0 || len(sent)+len(deadKeys) != len(evs) {
		t.Fatalf("%d dead-lettered events", len(deadKeys))
	}
	checkOncePerResourceInOrder(t, "webhook", sent, got)
	if n := hook.ahead.Load(); n > 0 {
		t.Fatalf("%d requests found the committed offset past the batch being delivered", n)
	}
}

// slowSink delays every delivery so a test can crash a connector with
// deliveries under way.
type slowSink struct {
	connectors.Sink
	delay time.Duration
}

func (s slowSink) Deliver(ctx context.Context, b *connectors.Batch) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Sink.Deliver(ctx, b)
}

func (s slowSink) PathTemplate() string { return s.Sink.(connectors.PathTemplater).PathTemplate() }

func TestS3CrashAndRestartLeavesNoDuplicates(t *testing.T) {
	b := startBroker(t)
	srv := versitygw.Start(t)
	srv.Bucket(t, "lake")
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: lake
    type: s3
    batch: {max_events: 100, max_age: 1h}
    s3:
      bucket: lake
      endpoint: %s
      path_style: true
      region: us-east-1
      access_key_id: %s
      secret_access_key: %s
`, b.Addr, srv.Endpoint, srv.Access, srv.Secret), nil)
	applyTopology(t, cfg)
	evs := generator.Unique(13, 200, 6000)
	produceEvents(t, cfg, evs)

	run := func(ctx context.Context, shutdown time.Duration) error {
		c := cfg.Connectors[0]
		sink, err := s3dest.New(ctx, *c.Destination.(*s3dest.Config))
		if err != nil {
			return err
		}
		defer sink.Close(context.Background())
		w, err := connectors.New(connectors.Options{
			Connector: c, DLQTopic: cfg.Topology.DLQ.Name, EventsEncoding: "json",
			Sink: slowSink{Sink: sink, delay: 15 * time.Millisecond}, Kafka: []kgo.Opt{kgo.SeedBrokers(b.Addr)},
			ShutdownTimeout: shutdown,
		})
		if err != nil {
			return err
		}
		return w.Run(ctx)
	}
	// Crash with deliveries under way: no flush, no further commit.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, -1) }()
	wait.Eventually(t, 60*time.Second, "some objects", func() bool { return len(listObjects(t, srv, "lake", "")) >= 15 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before := len(listObjects(t, srv, "lake", ""))

	// Restart and stop cleanly, which flushes the last open batches.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- run(ctx, 30*time.Second) }()
	wait.Eventually(t, 60*time.Second, "all full batches", func() bool { return len(listObjects(t, srv, "lake", "")) >= 6000/100-6 })
	time.Sleep(200 * time.Millisecond) // the runtime is idle between polls; nothing is asserted on this
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []connectortest.Delivered
	keys := listObjects(t, srv, "lake", "")
	for _, k := range keys {
		ds, err := connectortest.Decode(getObject(t, srv, "lake", k), "ndjson", "gzip")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds...)
	}
	t.Logf("%d objects before the crash, %d after the restart", before, len(keys))
	checkOncePerResourceInOrder(t, "bucket after a crash", evs, got)
}

func TestDeadEndpointDoesNotStallAnotherConnector(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: dead
    type: http
    batch: {max_events: 10, max_age: 100ms}
    retry: {max_attempts: 1000, initial_backoff: 100ms, max_backoff: 1s}
    http: {url: "http://127.0.0.1:1/nowhere", timeout: 1s}
  - name: files
    type: file
    batch: {max_events: 100000, max_age: 300ms}
    file: {dir: %s, path: "out/"}
`, b.Addr, out), nil)
	applyTopology(t, cfg)
	// Stopping gives the dead connector two seconds to flush, not thirty.
	runApp(t, cfg, app.Options{ShutdownTimeout: 2 * time.Second})
	for wave := 1; wave <= 3; wave++ {
		evs := generator.Unique(uint64(20+wave), 50, 500)
		produceEvents(t, cfg, evs)
		// max_age is 300ms; allow generous slack for a loaded machine,
		// but far less than the dead connector's retries take.
		wait.Eventually(t, 10*time.Second, fmt.Sprintf("wave %d in files", wave), func() bool { return len(readOutput(t, out)) >= wave*500 })
	}
}

func TestKinesisOversizeEventGoesToDLQAndTheRestArrives(t *testing.T) {
	b := startBroker(t)
	endpoint := kinesalite.Start(t)
	cfg := loadConfig(t, fmt.Sprintf(`
kafka: {brokers: ["%s"]}
processor: {enabled: false}
api: {listen: "off"}
connectors:
  - name: stream
    type: kinesis
    batch: {max_events: 100, max_age: 200ms}
    kinesis: {stream: events, endpoint: %s, region: us-east-1, access_key_id: x, secret_access_key: y}
`, b.Addr, endpoint), nil)
	applyTopology(t, cfg)
	kc := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	if _, err := kc.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String("events"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "stream active", func() bool {
		d, err := kc.DescribeStream(context.Background(), &kinesis.DescribeStreamInput{StreamName: aws.String("events")})
		return err == nil && d.StreamDescription.StreamStatus == kinesistypes.StreamStatusActive
	})
	evs := generator.Unique(41, 20, 300)
	evs[150].LeadData = json.RawMessage(`{"blob":"` + strings.Repeat("x", 2<<20) + `"}`)
	produceEvents(t, cfg, evs)
	runApp(t, cfg, app.Options{})

	dead := consumeAll(t, cfg, cfg.Topology.DLQ.Name, 1, 30*time.Second)
	e, err := schemas.JSON{}.Decode(dead[0].Value)
	if err != nil || e.EventID != evs[150].EventID || dlq.Header(dead[0], dlq.HeaderClass) != "permanent" {
		t.Fatalf("dead letter %v %v: %v", e, err, dead[0].Headers)
	}
	got := map[string]bool{}
	wait.Eventually(t, 60*time.Second, "the other 299 events in the stream", func() bool {
		shards, err := kc.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("events")})
		if err != nil {
			return false
		}
		for _, sh := range shards.Shards {
			it, err := kc.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("events"), ShardId: sh.ShardId, ShardIteratorType: kinesistypes.ShardIteratorTypeTrimHorizon})
			if err != nil {
				return false
			}
			r, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
			if err != nil {
				return false
			}
			for _, rec := range r.Records {
				if ev, err := (schemas.JSON{}).Decode(rec.Data); err == nil {
					got[ev.EventID] = true
				}
			}
		}
		return len(got) >= 299
	})
	if got[evs[150].EventID] || len(got) != 299 {
		t.Fatalf("%d events in the stream; the oversize one there: %v", len(got), got[evs[150].EventID])
	}
}
