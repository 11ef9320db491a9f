// Package kinesis is the Amazon Kinesis Data Streams destination: one
// record per event, partition key from a template (default the resource
// id). Per-key order holds because a PutRecords call never carries two
// records of one key: a key's next record goes only after the previous
// one was accepted, so a partial failure cannot let a later record
// overtake an earlier one. Records that fail are retried by the runtime,
// under the connector's retry policy; this package makes no retry rounds
// of its own.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/awsconf"
	"github.com/firehose/firehose/internal/yamlconf"
)

// API limits of PutRecords.
const (
	maxRecordsPerCall = 500
	maxBytesPerCall   = 5 << 20
	maxRecordBytes    = 1 << 20 // data plus partition key
)

// Config is the kinesis section of a connector.
type Config struct {
	// Stream is the stream name or ARN; required. A name may be a
	// template ("leads-{{event_type}}"): each event goes to the stream
	// rendered for it (see connectors.Router).
	Stream string `yaml:"stream"`
	// PartitionKey is a template; default {{resource_id}}.
	PartitionKey    string `yaml:"partition_key"`
	Region          string `yaml:"region"`   // default from the AWS environment
	Endpoint        string `yaml:"endpoint"` // e.g. a local kinesalite
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.PartitionKey == "" {
		c.PartitionKey = "{{resource_id}}"
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Stream == "":
		errs = append(errs, yamlconf.Errorf("stream", "required: a stream name or ARN"))
	case strings.Contains(c.Stream, "{{") && strings.HasPrefix(c.Stream, "arn:"):
		errs = append(errs, yamlconf.Errorf("stream", "a template renders stream names, not ARNs"))
	case !strings.HasPrefix(c.Stream, "arn:"):
		if _, err := connectors.TargetTemplate(c.Stream, CheckStream); err != nil {
			errs = append(errs, yamlconf.Errorf("stream", "%v", err))
		}
	}
	if _, err := connectors.ParseTemplate(c.PartitionKey); err != nil {
		errs = append(errs, yamlconf.Errorf("partition_key", "%v", err))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, yamlconf.Errorf("access_key_id", "access_key_id and secret_access_key go together"))
	}
	return errors.Join(errs...)
}

// Sink puts records.
type Sink struct {
	cfg    Config
	client *kinesis.Client
	key    *connectors.Template
	stream *connectors.Template // nil: cfg.Stream for every record
}

// New builds the client from the default AWS configuration and cfg. The
// SDK retries a failed call as it does by default; records a call did not
// take are retried by the runtime.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	key, err := connectors.ParseTemplate(cfg.PartitionKey)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconf.Load(ctx, cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey)
	if err != nil {
		return nil, fmt.Errorf("kinesis destination: %w", err)
	}
	client := kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	sink := &Sink{cfg: cfg, client: client, key: key}
	if strings.Contains(cfg.Stream, "{{") {
		if sink.stream, err = connectors.TargetTemplate(cfg.Stream, CheckStream); err != nil {
			return nil, err
		}
	}
	return sink, nil
}

// TargetTemplate implements connectors.Router.
func (s *Sink) TargetTemplate() *connectors.Template { return s.stream }

// CheckTarget implements connectors.Router.
func (s *Sink) CheckTarget(name string) error { return CheckStream(name) }

// CheckStream reports why name is not a Kinesis stream name: 1 to 128
// letters, digits, '_', '.' and '-'.
func CheckStream(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("a Kinesis stream name is 1 to 128 characters")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("a Kinesis stream name holds only letters, digits, '_', '.' and '-', not %q", c)
		}
	}
	return nil
}

// KeyTemplate implements connectors.RecordSink.
func (s *Sink) KeyTemplate() *connectors.Template { return s.key }

// Write implements connectors.RecordSink. Each call carries the head of
// every key's queue, within the API's limits; a key whose record failed
// sends nothing more in this Write, so its later records wait for the
// runtime's retry behind it.
func (s *Sink) Write(ctx context.Context, recs []*connectors.Record) {
	if s.stream == nil {
		s.writeStream(ctx, s.cfg.Stream, recs)
		return
	}
	// Streams are written one after another, each in its records' order.
	var streams []string
	by := map[string][]*connectors.Record{}
	for _, r := range recs {
		if _, ok := by[r.Target]; !ok {
			streams = append(streams, r.Target)
		}
		by[r.Target] = append(by[r.Target], r)
	}
	for _, st := range streams {
		s.writeStream(ctx, st, by[st])
	}
}

// writeStream writes recs to one stream.
func (s *Sink) writeStream(ctx context.Context, stream string, recs []*connectors.Record) {
	queues := map[string][]*connectors.Record{}
	var keys []string // in order of first appearance
	for _, r := range recs {
		r.Err = connectors.ErrNotWritten // until a call says otherwise
		if len(r.Value)+len(r.Key) > maxRecordBytes {
			r.Err = connectors.Describe(connectors.Permanent(fmt.Errorf("kinesis %s: record of %d bytes with its key is over the 1 MiB limit", stream, len(r.Value)+len(r.Key)), ""), 0, "", connectors.ClassTooLarge)
			continue
		}
		k := string(r.Key)
		if _, ok := queues[k]; !ok {
			keys = append(keys, k)
		}
		queues[k] = append(queues[k], r)
	}
	for len(queues) > 0 && ctx.Err() == nil {
		var call []*connectors.Record
		bytes := 0
		for _, k := range keys {
			q := queues[k]
			if len(q) == 0 {
				continue
			}
			n := len(q[0].Value) + len(q[0].Key)
			if len(call) == maxRecordsPerCall || bytes+n > maxBytesPerCall {
				break
			}
			call = append(call, q[0])
			bytes += n
		}
		s.put(ctx, stream, call)
		if errors.Is(call[0].Err, connectors.ErrNoTarget) {
			for _, q := range queues { // so do the rest of its records
				for _, r := range q {
					r.Err = call[0].Err
				}
			}
			return
		}
		for _, r := range call {
			k := string(r.Key)
			if r.Err != nil {
				delete(queues, k) // the rest of the key waits behind it
				continue
			}
			if queues[k] = queues[k][1:]; len(queues[k]) == 0 {
				delete(queues, k)
			}
		}
	}
	for _, q := range queues {
		for _, r := range q {
			r.Err = ctx.Err()
		}
	}
}

// put sends one PutRecords call and sets each record's outcome.
func (s *Sink) put(ctx context.Context, stream string, call []*connectors.Record) {
	in := &kinesis.PutRecordsInput{Records: make([]types.PutRecordsRequestEntry, len(call))}
	if strings.HasPrefix(stream, "arn:") {
		in.StreamARN = aws.String(stream)
	} else {
		in.StreamName = aws.String(stream)
	}
	for j, r := range call {
		in.Records[j] = types.PutRecordsRequestEntry{Data: r.Value, PartitionKey: aws.String(string(r.Key))}
	}
	out, err := s.client.PutRecords(ctx, in)
	if err == nil && len(out.Records) != len(call) {
		err = fmt.Errorf("PutRecords answered %d records for %d", len(out.Records), len(call))
	}
	if err != nil {
		status, code, class := awsconf.Failure(err)
		err = connectors.Describe(connectors.Retryable(fmt.Errorf("kinesis %s: %w", stream, err), 0), status, code, class)
		if code == "ResourceNotFoundException" && call[0].Target != "" {
			err = connectors.Describe(connectors.Permanent(fmt.Errorf("%w: %w", connectors.ErrNoTarget, err), ""), status, code, "")
		}
		for _, r := range call {
			r.Err = err
		}
		return
	}
	for j, res := range out.Records {
		call[j].Err = nil
		if res.ErrorCode != nil {
			// ProvisionedThroughputExceeded and InternalFailure, the
			// only per-record codes, are both worth another try.
			code := aws.ToString(res.ErrorCode)
			class := connectors.ClassServer
			if awsconf.IsThrottling(code) {
				class = connectors.ClassThrottled
			}
			call[j].Err = connectors.Describe(connectors.Retryable(fmt.Errorf("kinesis %s: %s: %s", stream, code, aws.ToString(res.ErrorMessage)), 0), 0, code, class)
		}
	}
}

// Close implements connectors.RecordSink: it closes idle connections.
func (s *Sink) Close(context.Context) error {
	awsconf.CloseIdle(s.client.Options().HTTPClient)
	return nil
}
