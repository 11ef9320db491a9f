package ops

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/internal/dlq"
)

// DeadLetter is one record of the DLQ with its reason.
type DeadLetter struct {
	Partition       int32     `json:"partition"`
	Offset          int64     `json:"offset"`
	Time            time.Time `json:"time"`
	Stage           string    `json:"stage"`
	Class           string    `json:"class"`
	Message         string    `json:"message"`
	SourceTopic     string    `json:"source_topic"`
	SourcePartition string    `json:"source_partition"`
	SourceOffset    string    `json:"source_offset"`
	Response        string    `json:"response,omitempty"`
	Key             string    `json:"key"`
	Value           string    `json:"value"`
	// ValueSize and ValueSHA256 are set when the value was cut to fit
	// the DLQ topic: the original's length and SHA-256.
	ValueSize   string `json:"value_size,omitempty"`
	ValueSHA256 string `json:"value_sha256,omitempty"`

	rec *kgo.Record
}

// DLQFilter chooses dead letters.
type DLQFilter struct {
	Stage string    // "processor" or "connector:<name>"; empty: all
	Class string    // e.g. invalid; empty: all
	Since time.Time // dead-lettered at or after; zero: all retained
	At    string    // one record, "partition:offset"
	Limit int       // at most this many; 0: all
}

func (f DLQFilter) match(d *DeadLetter) bool {
	return (f.Stage == "" || d.Stage == f.Stage) && (f.Class == "" || d.Class == f.Class) &&
		(f.Since.IsZero() || !d.Time.Before(f.Since))
}

// ReadDLQ reads the dead letters that match f, oldest first per partition,
// up to what the topic held when it started.
func ReadDLQ(ctx context.Context, kopts []kgo.Opt, topic string, f DLQFilter) ([]DeadLetter, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var starts kadm.ListedOffsets
	if f.Since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		// Dead letters are stamped when written, so record time is the
		// dead-letter time.
		starts, err = adm.ListOffsetsAfterMilli(ctx, f.Since.UnixMilli(), topic)
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → end offset still to reach
	var onlyP int32 = -1
	var onlyO int64 = -1
	if f.At != "" {
		at, err := ParseOffsets(f.At)
		if err != nil || len(at) != 1 {
			return nil, fmt.Errorf("%q is not partition:offset", f.At)
		}
		for p, o := range at {
			onlyP, onlyO = p, o
		}
	}
	for p, e := range ends[topic] {
		s, ok := starts.Lookup(topic, p)
		start := s.Offset
		if !ok || s.Err != nil || start < 0 {
			start = e.Offset
		}
		if onlyP >= 0 {
			if p != onlyP {
				continue
			}
			start = onlyO
		}
		if start < e.Offset {
			from[p] = kgo.NewOffset().At(start)
			remaining[p] = e.Offset
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(append([]kgo.Opt(nil), kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []DeadLetter
	for len(remaining) > 0 {
		// Transaction markers take offsets no record has: a partition
		// idle for a second has nothing more to give.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := rd.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fs.NumRecords() == 0 {
			break
		}
		for _, r := range fs.Records() {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if onlyP >= 0 && r.Offset != onlyO {
				continue
			}
			d := toDeadLetter(r)
			if f.match(&d) {
				out = append(out, d)
			}
			if onlyP >= 0 {
				return out, nil
			}
		}
		if f.Limit > 0 && len(out) >= f.Limit {
			return out[:f.Limit], nil
		}
	}
	return out, nil
}

func toDeadLetter(r *kgo.Record) DeadLetter {
	d := DeadLetter{
		Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp,
		Stage: dlq.Header(r, dlq.HeaderStage), Class: dlq.Header(r, dlq.HeaderClass),
		Message: dlq.Header(r, dlq.HeaderMessage), SourceTopic: dlq.Header(r, dlq.HeaderSourceTopic),
		SourcePartition: dlq.Header(r, dlq.HeaderSourcePartition), SourceOffset: dlq.Header(r, dlq.HeaderSourceOffset),
		Response: dlq.Header(r, dlq.HeaderResponse), Key: string(r.Key), Value: string(r.Value), rec: r,
		ValueSize: dlq.Header(r, dlq.HeaderValueSize), ValueSHA256: dlq.Header(r, dlq.HeaderValueSHA256),
	}
	if t, err := time.Parse(time.RFC3339Nano, dlq.Header(r, dlq.HeaderTime)); err == nil {
		d.Time = t
	}
	return d
}

// RedriveTarget says where a dead letter goes back to: records the
// processor refused go to the raw topic, records a connector could not
// deliver go to the events topic addressed to that connector alone.
func RedriveTarget(d DeadLetter, rawTopic, eventsTopic string) (topic, connector string) {
	if c, ok := strings.CutPrefix(d.Stage, dlq.ConnectorStagePrefix); ok {
		return eventsTopic, c
	}
	return rawTopic, ""
}

// Redrive re-submits dead letters unchanged (the original key, value and
// headers), marked with where they came from. It returns how many went to
// each topic.
func Redrive(ctx context.Context, cl *kgo.Client, dls []DeadLetter, rawTopic, eventsTopic string) (map[string]int, error) {
	counts := map[string]int{}
	recs := make([]*kgo.Record, 0, len(dls))
	for _, d := range dls {
		topic, connector := RedriveTarget(d, rawTopic, eventsTopic)
		h := append(dlq.Original(d.rec), kgo.RecordHeader{Key: dlq.HeaderRedrive, Value: []byte(strconv.Itoa(int(d.Partition)) + ":" + strconv.FormatInt(d.Offset, 10))})
		if connector != "" {
			h = append(h, kgo.RecordHeader{Key: dlq.HeaderConnector, Value: []byte(connector)})
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: d.rec.Key, Value: d.rec.Value, Headers: h})
		counts[topic]++
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("redrive: %w", err)
	}
	return counts, nil
}
