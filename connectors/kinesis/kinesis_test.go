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
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/kinesalite"
	"github.com/firehose/firehose/testsupport/wait"
)

func newSink(t *testing.T, endpoint string, stream ...string) *Sink {
	t.Helper()
	cfg := Config{Stream: append(stream, "events")[0], Endpoint: endpoint, Region: "us-east-1", AccessKeyID: "x", SecretAccessKey: "y"}
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

// stream creates the stream (4 shards) on kinesalite, "events" or the
// one named, and waits until it is active.
func stream(t *testing.T, s *Sink, name ...string) {
	t.Helper()
	ctx := context.Background()
	n := append(name, "events")[0]
	if _, err := s.client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(n), ShardCount: aws.Int32(4)}); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "the stream active", func() bool {
		d, err := s.client.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(n)})
		return err == nil && d.StreamDescription.StreamStatus == types.StreamStatusActive
	})
}

// readAll reads every record of every shard from the start, of "events"
// or the stream named.
func readAll(t *testing.T, s *Sink, name ...string) []types.Record {
	t.Helper()
	ctx := context.Background()
	n := append(name, "events")[0]
	shards, err := s.client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(n)})
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Record
	for _, sh := range shards.Shards {
		it, err := s.client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(n), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
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

// TestRecordSuite runs the record conformance suite against kinesalite,
// behind a proxy that checks every PutRecords call and, when flaky,
// throttles some.
func TestRecordSuite(t *testing.T) {
	connectortest.RunRecords(t, connectortest.RecordTarget{
		Start: func(t *testing.T, flaky bool) (func(*testing.T) connectors.RecordSink, func() []connectortest.Stored) {
			f := &proxy{target: kinesalite.Start(t), flaky: flaky}
			srv := httptest.NewServer(f)
			t.Cleanup(func() {
				srv.Close()
				if n := f.sameKey.Load(); n > 0 {
					t.Errorf("%d PutRecords calls carried two records of one key", n)
				}
			})
			s := newSink(t, srv.URL)
			stream(t, s)
			open := func(t *testing.T) connectors.RecordSink { return newSink(t, srv.URL) }
			read := func() []connectortest.Stored {
				var out []connectortest.Stored
				for _, r := range readAll(t, s) {
					out = append(out, connectortest.Stored{Key: aws.ToString(r.PartitionKey), Value: r.Data})
				}
				return out
			}
			return open, read
		},
		TooLarge: 1 << 20,
		Refusal:  connectors.ErrorRule{Code: connectors.Strings{"ProvisionedThroughputExceededException"}},
	})
}

// proxy sits in front of kinesalite and counts PutRecords calls that
// carry two records of one partition key. When flaky, every fifth call is
// throttled whole, and in the first calls every seventh record is
// answered with ProvisionedThroughputExceededException without being
// forwarded, as Kinesis does when a shard is over its limit.
type proxy struct {
	target           string
	flaky            bool
	calls, throttled atomic.Int64
	failedRecords    atomic.Int64
	sameKey          atomic.Int64
}

func (f *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get("X-Amz-Target") != "Kinesis_20131202.PutRecords" {
		f.forward(w, r, body)
		return
	}
	var keys struct {
		Records []struct{ PartitionKey string }
	}
	if err := json.Unmarshal(body, &keys); err == nil {
		seen := map[string]bool{}
		for _, k := range keys.Records {
			if seen[k.PartitionKey] {
				f.sameKey.Add(1)
				break
			}
			seen[k.PartitionKey] = true
		}
	}
	if !f.flaky {
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

// forwarder keeps no connection to kinesalite open: the leak check
// counts goroutines, and the sink's are the ones it is about.
var forwarder = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (f *proxy) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	req, _ := http.NewRequest(r.Method, f.target+r.URL.Path, bytes.NewReader(body))
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.ContentLength = int64(len(body))
	resp, err := forwarder.Do(req)
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

// A stream template routes each event to the stream of its type, every
// resource's events in order within each; an event whose type renders to
// a name Kinesis refuses, or to a stream no one created, goes to the DLQ
// with the reason.
func TestStreamTemplateRoutesByEventType(t *testing.T) {
	endpoint := kinesalite.Start(t)
	kinds := []string{"created", "updated", "failed"}
	evs := connectortest.EventsOver(23, 30, 900)
	gone := map[string]bool{}
	for i, e := range evs {
		e.EventType = kinds[i%len(kinds)]
		if i%10 == 9 {
			e.EventType = "deleted" // no stream
			gone[e.EventID] = true
		}
	}
	evs[100].EventType = "lead created!"
	s := newSink(t, endpoint, "leads-{{event_type}}")
	for _, ty := range kinds {
		stream(t, s, "leads-"+ty)
	}
	p := connectortest.StartPipeline(t, s, evs, connectors.Config{})
	p.Drained(t)
	for _, ty := range kinds {
		var want, got []*schemas.Event
		for _, e := range evs {
			if e.EventType == ty {
				want = append(want, e)
			}
		}
		for _, r := range readAll(t, s, "leads-"+ty) {
			e, err := schemas.JSON{}.Decode(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e)
		}
		connectortest.CheckOrder(t, want, got, true)
	}
	dead := p.ReadDLQ(t, 1+len(gone))
	if len(dead) != 1+len(gone) {
		t.Fatalf("%d dead letters, want %d", len(dead), 1+len(gone))
	}
	for _, r := range dead {
		e, _ := schemas.JSON{}.Decode(r.Value)
		msg := dlq.Header(r, dlq.HeaderMessage)
		ok := e.EventID == evs[100].EventID && strings.Contains(msg, `target "leads-lead%20created%21"`) ||
			gone[e.EventID] && strings.Contains(msg, `target "leads-deleted"`) && strings.Contains(msg, "no such target")
		if !ok || dlq.Header(r, dlq.HeaderClass) != "target" {
			t.Fatalf("dead letter %s (%s): class %q, %q", e.EventID, e.EventType, dlq.Header(r, dlq.HeaderClass), msg)
		}
	}
}
