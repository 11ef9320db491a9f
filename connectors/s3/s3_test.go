package s3

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/archive"
	"github.com/firehose/firehose/connectors/connectortest"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/versitygw"
)

func newSink(t *testing.T, srv *versitygw.Server, mod func(*Config)) *Sink {
	t.Helper()
	cfg := Config{Bucket: "events", Endpoint: srv.Endpoint, PathStyle: true, Region: "us-east-1", AccessKeyID: srv.Access, SecretAccessKey: srv.Secret}
	if mod != nil {
		mod(&cfg)
	}
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

func get(t *testing.T, srv *versitygw.Server, bucket, key string) (*s3.GetObjectOutput, []byte) {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out, data
}

func TestConformance(t *testing.T) {
	srv := versitygw.Start(t)
	srv.Bucket(t, "events")
	connectortest.Run(t, connectortest.Target{
		New: func(t *testing.T) connectors.Sink { return newSink(t, srv, nil) },
		Fetch: func(t *testing.T, b *connectors.Batch) []byte {
			out, data := get(t, srv, "events", b.Key)
			if aws.ToString(out.ContentType) != b.ContentType {
				t.Errorf("Content-Type %q, want %q", aws.ToString(out.ContentType), b.ContentType)
			}
			if b.ContentEncoding != "" && aws.ToString(out.ContentEncoding) != b.ContentEncoding {
				t.Errorf("Content-Encoding %q, want %q", aws.ToString(out.ContentEncoding), b.ContentEncoding)
			}
			return data
		},
	})
}

func TestMultipartUpload(t *testing.T) {
	srv := versitygw.Start(t)
	srv.Bucket(t, "events")
	sink := newSink(t, srv, func(c *Config) { c.MultipartThreshold, c.PartSize = 5<<20, 5<<20 })
	defer sink.Close(context.Background())
	b := connectortest.MakeBatch(t, 0, 0, connectortest.Events(9, 20000), "ndjson", "none")
	if len(b.Body) < 11<<20 {
		t.Fatalf("body is %d bytes; the test needs three parts", len(b.Body))
	}
	if err := sink.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	_, data := get(t, srv, "events", b.Key)
	got, err := connectortest.Decode(data, "ndjson", "none")
	if err != nil {
		t.Fatal(err)
	}
	connectortest.CheckDelivered(t, b, got)
}

func TestWrongSecretIsRefused(t *testing.T) {
	srv := versitygw.Start(t)
	srv.Bucket(t, "events")
	sink := newSink(t, srv, func(c *Config) { c.SecretAccessKey = "not-the-secret" })
	defer sink.Close(context.Background())
	err := sink.Deliver(context.Background(), connectortest.MakeBatch(t, 0, 0, connectortest.Events(1, 3), "ndjson", "none"))
	if err == nil {
		t.Fatal("a wrong secret was accepted")
	}
	if connectors.IsPermanent(err) {
		t.Fatalf("an access error must be retried (an operator fixes it without touching the data): %v", err)
	}
}

func TestMissingBucketIsRetryable(t *testing.T) {
	srv := versitygw.Start(t)
	sink := newSink(t, srv, func(c *Config) { c.Bucket = "nope" })
	defer sink.Close(context.Background())
	err := sink.Deliver(context.Background(), connectortest.MakeBatch(t, 0, 0, connectortest.Events(1, 3), "ndjson", "none"))
	if err == nil || connectors.IsPermanent(err) || !strings.Contains(err.Error(), "s3://nope/") {
		t.Fatalf("missing bucket: %v", err)
	}
}

// A bucket's objects under a prefix read back as an archive: listed in
// order, each decoding to the events delivered.
func TestArchiveReadsBack(t *testing.T) {
	srv := versitygw.Start(t)
	srv.Bucket(t, "events")
	sink := newSink(t, srv, nil)
	defer sink.Close(context.Background())
	evs := connectortest.Events(12, 90)
	var keys []string
	want := map[string][]*schemas.Event{}
	for i, enc := range []string{"ndjson", "avro", "parquet"} {
		b := connectortest.MakeBatch(t, int32(i), 0, evs[i*30:(i+1)*30], enc, map[string]string{"ndjson": "zstd", "avro": "none", "parquet": "zstd"}[enc])
		b.Key = "lake/" + b.Key
		if err := sink.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b.Key)
		want[b.Key] = evs[i*30 : (i+1)*30]
	}
	slices.Sort(keys)
	other := connectortest.MakeBatch(t, 0, 0, evs[:5], "ndjson", "gzip")
	other.Key = "other/" + other.Key
	if err := sink.Deliver(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	a := sink.Archive("lake/")
	listed, err := a.List(context.Background())
	if err != nil || strings.Join(listed, ",") != strings.Join(keys, ",") {
		t.Fatalf("listed %v (%v), want %v", listed, err, keys)
	}
	n := 0
	for _, k := range listed {
		body, err := a.Read(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := archive.Decode(k, body)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range got {
			if e.EventID != want[k][j].EventID {
				t.Fatalf("%s event %d is %s, want %s", k, j, e.EventID, want[k][j].EventID)
			}
			n++
		}
	}
	if n != 90 {
		t.Fatalf("%d events read back, want 90", n)
	}
}
