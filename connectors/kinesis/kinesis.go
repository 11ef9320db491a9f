// Package kinesis is the Amazon Kinesis Data Streams destination: one
// record per event, partition key from a template (default the resource
// id). Per-key order holds because a PutRecords call never carries two
// records of one key: a key's next record goes only after the previous
// one was accepted, so a partial failure cannot let a later record
// overtake an earlier one.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/awsconf"
	"github.com/firehose/firehose/internal/config"
)

// API limits of PutRecords.
const (
	maxRecordsPerCall = 500
	maxBytesPerCall   = 5 << 20
	maxRecordBytes    = 1 << 20 // data plus partition key
)

// Config is the kinesis section of a connector.
type Config struct {
	// Stream is the stream name or ARN; required.
	Stream string `yaml:"stream"`
	// PartitionKey is a template; default {{resource_id}}.
	PartitionKey    string `yaml:"partition_key"`
	Region          string `yaml:"region"`   // default from the AWS environment
	Endpoint        string `yaml:"endpoint"` // e.g. a local kinesalite
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// Rounds bounds the PutRecords calls one delivery makes for records
	// that failed (throttling, internal errors) before the batch goes back
	// to the runtime's retry; default 8.
	Rounds int `yaml:"rounds"`
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.PartitionKey == "" {
		c.PartitionKey = "{{resource_id}}"
	}
	if c.Rounds == 0 {
		c.Rounds = 8
	}
}

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, config.Errorf("stream", "required: a stream name or ARN"))
	}
	if _, err := connectors.ParseTemplate(c.PartitionKey); err != nil {
		errs = append(errs, config.Errorf("partition_key", "%v", err))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, config.Errorf("access_key_id", "access_key_id and secret_access_key go together"))
	}
	if c.Rounds < 1 {
		errs = append(errs, config.Errorf("rounds", "must be at least 1"))
	}
	return errors.Join(errs...)
}

// Sink puts records.
type Sink struct {
	cfg    Config
	client *kinesis.Client
	key    *connectors.Template
	acks   connectors.Acks // records already accepted, by batch
}

// New builds the client from the default AWS configuration and cfg. The
// SDK retries a call once more without its retry quota; failed records
// are retried here, per record.
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
	return &Sink{cfg: cfg, client: client, key: key}, nil
}

type entry struct {
	i    int
	key  string
	data []byte
}

// Deliver implements connectors.Sink.
func (s *Sink) Deliver(ctx context.Context, b *connectors.Batch) error {
	acked := s.acks.For(b)

	// Each key's records, in order, not yet accepted.
	queues := map[string][]entry{}
	var keys []string // keys in order of first appearance
	var oversize []int
	for i, e := range b.Events {
		if acked[i] {
			continue
		}
		k := string(s.key.Render(nil, b.Topic, b.Partition, e.Timestamp, e))
		data := connectors.AppendEvent(nil, b, i)
		if len(data)+len(k) > maxRecordBytes {
			oversize = append(oversize, i)
			acked[i] = true // it goes to the DLQ; never send it
			continue
		}
		if _, ok := queues[k]; !ok {
			keys = append(keys, k)
		}
		queues[k] = append(queues[k], entry{i, k, data})
	}

	var lastErr error
	backoff := 100 * time.Millisecond
	for round := 0; len(queues) > 0; {
		// One call: the head of each key's queue, within the API limits.
		var call []entry
		bytes := 0
		for _, k := range keys {
			q := queues[k]
			if len(q) == 0 {
				continue
			}
			n := len(q[0].data) + len(k)
			if len(call) == maxRecordsPerCall || bytes+n > maxBytesPerCall {
				break
			}
			call = append(call, q[0])
			bytes += n
		}
		ok, failure, err := s.put(ctx, call)
		failed := 0
		for j, e := range call {
			if err != nil || !ok[j] {
				failed++
				continue
			}
			acked[e.i] = true
			if queues[e.key] = queues[e.key][1:]; len(queues[e.key]) == 0 {
				delete(queues, e.key)
			}
		}
		if failed == 0 {
			backoff = 100 * time.Millisecond
			continue
		}
		lastErr = err
		if err == nil {
			lastErr = fmt.Errorf("%d of %d records failed: %s", failed, len(call), failure)
		}
		if round++; round >= s.cfg.Rounds || ctx.Err() != nil {
			break
		}
		// Throttling and partial failures back off before the failed
		// records, still at the head of their keys, go again.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(backoff*2, 2*time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	if len(queues) > 0 {
		return connectors.Retryable(fmt.Errorf("deliver batch %s to kinesis %s: %d records not accepted: %w", b.ID, s.cfg.Stream, pendingCount(queues), lastErr), 0)
	}
	if len(oversize) > 0 {
		return connectors.PermanentEvents(fmt.Errorf("deliver batch %s to kinesis %s: %d events over the 1 MiB record limit", b.ID, s.cfg.Stream, len(oversize)), oversize)
	}
	s.acks.Done(b)
	return nil
}

// put sends one PutRecords call. ok[j] reports whether call[j] was
// accepted; failure describes the first rejected record.
func (s *Sink) put(ctx context.Context, call []entry) (ok []bool, failure string, err error) {
	in := &kinesis.PutRecordsInput{Records: make([]types.PutRecordsRequestEntry, len(call))}
	if strings.HasPrefix(s.cfg.Stream, "arn:") {
		in.StreamARN = aws.String(s.cfg.Stream)
	} else {
		in.StreamName = aws.String(s.cfg.Stream)
	}
	for j, e := range call {
		in.Records[j] = types.PutRecordsRequestEntry{Data: e.data, PartitionKey: aws.String(e.key)}
	}
	out, err := s.client.PutRecords(ctx, in)
	if err != nil {
		return nil, "", err
	}
	if len(out.Records) != len(call) {
		return nil, "", fmt.Errorf("PutRecords answered %d records for %d", len(out.Records), len(call))
	}
	ok = make([]bool, len(call))
	for j, r := range out.Records {
		if r.ErrorCode == nil {
			ok[j] = true
		} else if failure == "" {
			failure = aws.ToString(r.ErrorCode) + ": " + aws.ToString(r.ErrorMessage)
		}
	}
	return ok, failure, nil
}

func pendingCount(queues map[string][]entry) int {
	n := 0
	for _, q := range queues {
		n += len(q)
	}
	return n
}

// Close implements connectors.Sink.
func (s *Sink) Close(context.Context) error { return nil }
