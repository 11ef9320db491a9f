package kinesis

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/internal/kinesalite"
	"github.com/firehose/firehose/schemas"
)

func newSink(t *testing.T, endpoint string) *Sink {
	t.Helper()
	cfg := Config{Stream: "events", Endpoint: endpoint, Region: "us-east-1", AccessKeyID: "x", SecretAccessKey: "y"}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stream creates the stream (4 shards) on kinesalite and waits until it
// is active.
func stream(t *testing.T, s *Sink) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("events"), ShardCount: aws.Int32(4)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		d, err := s.client.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("events")})
		if err == nil && d.StreamDescription.StreamStatus == types.StreamStatusActive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not active: %v", err)
		}
	}
}

// readAll reads every record of every shard from the start.
func readAll(t *testing.T, s *Sink) []types.Record {
	t.Helper()
	ctx := context.Background()
	shards, err := s.client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("events")})
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Record
	for _, sh := range shards.Shards {
		it, err := s.client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("events"), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			r, err := s.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Records...)
			if len(r.Records) == 0 {
				break
			}
			iter = r.NextShardIterator
		}
	}
	return out
}

func deliverAll(t *testing.T, s *Sink, evs []*schemas.Event) int {
	t.Helper()
	retries := 0
	for i := 0; i < len(evs); i += 500 {
		b := connectortest.MakeBatch(t, 0, int64(i), evs[i:i+500], "ndjson", "none")
		for deadline := time.Now().Add(60 * time.Second); ; {
			err := s.Deliver(context.Background(), b)
			if err == nil {
				break
			}
			if connectors.IsPermanent(err) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			retries++
		}
	}
	return retries
}

// check: every event exactly once, keyed by resource, each key's records
// in order within its shard.
func check(t *testing.T, recs []types.Record, evs []*schemas.Event) {
	t.Helper()
	var got []*schemas.Event
	for _, r := range recs {
		e, err := schemas.JSON{}.Decode(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(r.PartitionKey) != e.ResourceID {
			t.Fatalf("record of %s has partition key %q", e.ResourceID, aws.ToString(r.PartitionKey))
		}
		got = append(got, e)
	}
	connectortest.CheckOrder(t, evs, got, true)
}

func TestPutRecordsOrderAndKeys(t *testing.T) {
	s := newSink(t, kinesalite.Start(t))
	stream(t, s)
	evs := connectortest.EventsOver(31, 500, 20000)
	if r := deliverAll(t, s, evs); r != 0 {
		t.Fatalf("%d retries without failures", r)
	}
	check(t, readAll(t, s), evs)
}

// flaky sits in front of kinesalite: every fifth PutRecords call is
// throttled whole, and in the first calls every seventh record is
// answered with ProvisionedThroughputExceededException without being
// forwarded, as Kinesis does when a shard is over its limit.
type flaky struct {
	target           string
	calls, throttled atomic.Int64
	failedRecords    atomic.Int64
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get("X-Amz-Target") != "Kinesis_20131202.PutRecords" {
		f.forward(w, r, body)
		return
	}
	n := f.calls.Add(1)
	if n%5 == 0 {
		f.throttled.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for stream events"}`))
		return
	}
	var req struct {
		Records    []json.RawMessage
		StreamName string
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	var keep []json.RawMessage
	var fail []bool
	for j, rec := range req.Records {
		bad := n < 60 && j%7 == 3
		fail = append(fail, bad)
		if !bad {
			keep = append(keep, rec)
		}
	}
	fwd, _ := json.Marshal(map[string]any{"Records": keep, "StreamName": req.StreamName})
	rec := httptest.NewRecorder()
	f.forward(rec, r, fwd)
	var resp struct {
		FailedRecordCount int
		Records           []json.RawMessage
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != 200 {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var merged []json.RawMessage
	k := 0
	for _, bad := range fail {
		if bad {
			f.failedRecords.Add(1)
			resp.FailedRecordCount++
			merged = append(merged, json.RawMessage(`{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard"}`))
			continue
		}
		merged = append(merged, resp.Records[k])
		k++
	}
	out, _ := json.Marshal(map[string]any{"FailedRecordCount": resp.FailedRecordCount, "Records": merged})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = w.Write(out)
}

func (f *flaky) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	req, _ := http.NewRequest(r.Method, f.target+r.URL.Path, bytes.NewReader(body))
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != "X-Amz-Crc32" && k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func TestPartialFailuresAndThrottlingKeepOrder(t *testing.T) {
	f := &flaky{target: kinesalite.Start(t)}
	proxy := httptest.NewServer(f)
	defer proxy.Close()
	s := newSink(t, proxy.URL)
	stream(t, s)
	evs := connectortest.EventsOver(32, 500, 5000) // kinesalite takes ~1k records/s; 5,000 still spans every key many times
	retries := deliverAll(t, s, evs)
	if f.failedRecords.Load() == 0 || f.throttled.Load() == 0 {
		t.Fatalf("the proxy failed %d records and throttled %d calls; the test proved nothing", f.failedRecords.Load(), f.throttled.Load())
	}
	check(t, readAll(t, s), evs)
	t.Logf("%d calls, %d throttled, %d records failed, %d batch retries", f.calls.Load(), f.throttled.Load(), f.failedRecords.Load(), retries)
}

func TestOversizeEventIsRefusedAloneAndTheRestDelivered(t *testing.T) {
	s := newSink(t, kinesalite.Start(t))
	stream(t, s)
	evs := connectortest.EventsOver(33, 10, 20)
	evs[7].LeadData = json.RawMessage(`{"blob":"` + strings.Repeat("x", 1<<20) + `"}`)
	err := s.Deliver(context.Background(), connectortest.MakeBatch(t, 0, 0, evs, "ndjson", "none"))
	var idx []int
	if !connectors.PermanentEventIndexes(err, &idx) || len(idx) != 1 || idx[0] != 7 {
		t.Fatalf("want event 7 refused alone, got %v (%v)", idx, err)
	}
	rest := append(append([]*schemas.Event{}, evs[:7]...), evs[8:]...)
	check(t, readAll(t, s), rest)
}
