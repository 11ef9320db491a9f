// Package s3 is the Amazon S3 destination (and any S3-compatible store):
// each batch becomes one object whose key ends with topic, partition and
// first offset, so a replay of the same offsets rewrites the same objects
// instead of adding duplicates. Large objects go up in parts.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/awsconf"
	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the s3 section of a connector.
type Config struct {
	Bucket string `yaml:"bucket"` // required
	// Key is the template of each object's prefix, e.g.
	// events/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/flow={{flow_id}}/.
	// The object name <topic>+<partition>+<first offset>.<ext> follows it.
	// Default {{topic}}/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/.
	Key string `yaml:"key"`
	// Region; default from the AWS environment (AWS_REGION, profile).
	Region string `yaml:"region"`
	// Endpoint of an S3-compatible store, e.g. http://127.0.0.1:7070.
	Endpoint string `yaml:"endpoint"`
	// PathStyle addresses buckets as endpoint/bucket/key, as most
	// S3-compatible stores need.
	PathStyle bool `yaml:"path_style"`
	// AccessKeyID and SecretAccessKey, when both set, replace the default
	// credential chain (environment, shared config, IMDS/ECS roles). Put
	// them in the environment: ${S3_SECRET}.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// SSE is server-side encryption: "" (the bucket's default), AES256
	// (SSE-S3) or aws:kms (SSE-KMS, with KMSKeyID or the account's key).
	SSE      string `yaml:"sse"`
	KMSKeyID string `yaml:"kms_key_id"`
	// StorageClass, e.g. STANDARD_IA; default the bucket's.
	StorageClass string `yaml:"storage_class"`
	// MultipartThreshold is the object size from which parts are used;
	// default 16MiB. PartSize is each part's size; default 8MiB, at
	// least 5MiB (S3's minimum).
	MultipartThreshold yamlconf.ByteSize `yaml:"multipart_threshold"`
	PartSize           yamlconf.ByteSize `yaml:"part_size"`
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.Key == "" {
		c.Key = "{{topic}}/year={{year}}/month={{month}}/day={{day}}/hour={{hour}}/"
	}
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = 16 << 20
	}
	if c.PartSize == 0 {
		c.PartSize = 8 << 20
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, yamlconf.Errorf("bucket", "required"))
	}
	if _, err := connectors.ParseTemplate(c.Key); err != nil {
		errs = append(errs, yamlconf.Errorf("key", "%v", err))
	}
	switch c.SSE {
	case "", "AES256", "aws:kms":
	default:
		errs = append(errs, yamlconf.Errorf("sse", `must be "", AES256 or aws:kms, got %q`, c.SSE))
	}
	if c.KMSKeyID != "" && c.SSE != "aws:kms" {
		errs = append(errs, yamlconf.Errorf("kms_key_id", "needs sse: aws:kms"))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, yamlconf.Errorf("access_key_id", "access_key_id and secret_access_key go together"))
	}
	if c.PartSize < 5<<20 {
		errs = append(errs, yamlconf.Errorf("part_size", "must be at least 5MiB, S3's minimum part size"))
	}
	if c.MultipartThreshold < c.PartSize {
		errs = append(errs, yamlconf.Errorf("multipart_threshold", "must be at least part_size"))
	}
	return errors.Join(errs...)
}

// Sink writes batches as objects.
type Sink struct {
	cfg       Config
	client    *s3.Client
	closeOnce sync.Once
}

// New builds the client from the default AWS configuration and cfg. The
// SDK retries a failed request once more, without its client-side retry
// quota: the runtime retries whole batches with its own backoff, and one
// client shared by many partitions must not run out of retry tokens.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	awsCfg, err := awsconf.Load(ctx, cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey)
	if err != nil {
		return nil, fmt.Errorf("s3 destination: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	return &Sink{cfg: cfg, client: client}, nil
}

// PathTemplate tells the runtime how to split and name batches.
func (s *Sink) PathTemplate() string { return s.cfg.Key }

// Deliver implements connectors.Sink: one PutObject, or a multipart upload
// from MultipartThreshold on.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	var err error
	if int64(len(b.Body)) >= int64(s.cfg.MultipartThreshold) {
		err = s.multipart(ctx, b)
	} else {
		in := &s3.PutObjectInput{
			Bucket:        aws.String(s.cfg.Bucket),
			Key:           aws.String(b.Key),
			Body:          bytes.NewReader(b.Body),
			ContentLength: aws.Int64(int64(len(b.Body))),
		}
		s.headers(&in.ContentType, &in.ContentEncoding, &in.ServerSideEncryption, &in.SSEKMSKeyId, &in.StorageClass, &in.Metadata, b)
		_, err = s.client.PutObject(ctx, in)
	}
	if err != nil {
		return classify(fmt.Errorf("deliver batch %s to s3://%s/%s: %w", b.ID, s.cfg.Bucket, b.Key, err))
	}
	return nil
}

func (s *Sink) headers(ct, ce **string, sse *types.ServerSideEncryption, kms **string, class *types.StorageClass, meta *map[string]string, b *connectors.Batch) {
	*ct = aws.String(b.ContentType)
	if b.ContentEncoding != "" {
		*ce = aws.String(b.ContentEncoding)
	}
	if s.cfg.SSE != "" {
		*sse = types.ServerSideEncryption(s.cfg.SSE)
	}
	if s.cfg.KMSKeyID != "" {
		*kms = aws.String(s.cfg.KMSKeyID)
	}
	if s.cfg.StorageClass != "" {
		*class = types.StorageClass(s.cfg.StorageClass)
	}
	*meta = map[string]string{"firehose-batch-id": b.ID, "firehose-events": fmt.Sprint(b.Len())}
}

func (s *Sink) multipart(ctx context.Context, b *connectors.Batch) error {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(b.Key)}
	s.headers(&in.ContentType, &in.ContentEncoding, &in.ServerSideEncryption, &in.SSEKMSKeyId, &in.StorageClass, &in.Metadata, b)
	up, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return err
	}
	abort := func(cause error) error {
		// Best effort, on a fresh context: an abandoned upload costs
		// storage until a lifecycle rule removes it.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: in.Bucket, Key: in.Key, UploadId: up.UploadId})
		return cause
	}
	var parts []types.CompletedPart
	size := int(s.cfg.PartSize)
	for i, off := int32(1), 0; off < len(b.Body); i, off = i+1, off+size {
		chunk := b.Body[off:min(off+size, len(b.Body))]
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: in.Bucket, Key: in.Key, UploadId: up.UploadId, PartNumber: aws.Int32(i),
			Body: bytes.NewReader(chunk), ContentLength: aws.Int64(int64(len(chunk))),
		})
		if err != nil {
			return abort(fmt.Errorf("part %d: %w", i, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(i)})
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: in.Bucket, Key: in.Key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(err)
	}
	return nil
}

// classify marks errors a retry cannot fix (a request the store rejects
// as malformed or too large) permanent. Throttling, server errors,
// timeouts, and also access and missing-bucket errors, which an operator
// fixes without touching the data, are retried. Each carries its status
// and S3 error code for on_error rules.
func classify(err error) error {
	status, code, class := awsconf.Failure(err)
	switch st := status; {
	case st == 0, st == http.StatusForbidden, st == http.StatusNotFound, st == http.StatusRequestTimeout, st == http.StatusTooManyRequests, st >= 500:
	case st >= 400:
		var re *smithyhttp.ResponseError
		errors.As(err, &re)
		return connectors.Describe(connectors.Permanent(err, fmt.Sprintf("HTTP %d: %v", st, re.Err)), status, code, class)
	}
	return connectors.Describe(connectors.Retryable(err, 0), status, code, class)
}

// Close implements connectors.Sink.
func (s *Sink) Close(context.Context) error {
	s.closeOnce.Do(func() {
		awsconf.CloseIdle(s.client.Options().HTTPClient)
	})
	return nil
}

// Archive returns the objects of the sink's bucket under prefix as an
// archive to read back (see connectors/archive).
func (s *Sink) Archive(prefix string) *Archive { return &Archive{s: s, prefix: prefix} }

// Archive is a bucket's objects under a prefix.
type Archive struct {
	s      *Sink
	prefix string
}

// List returns the objects' keys, in order.
func (a *Archive) List(ctx context.Context) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(a.s.client, &s3.ListObjectsV2Input{Bucket: aws.String(a.s.cfg.Bucket), Prefix: aws.String(a.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", a.s.cfg.Bucket, a.prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Read returns one object's bytes.
func (a *Archive) Read(ctx context.Context, key string) ([]byte, error) {
	out, err := a.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", a.s.cfg.Bucket, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}
