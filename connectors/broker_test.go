package connectors_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/embedded"
	"github.com/firehose/firehose/testsupport/testenv"
)

// eventsBroker starts an embedded broker whose topic "events" (with
// partitions) holds evs, keyed by resource, and whose "events.dlq" exists.
// It returns the broker, an admin client, and each resource's partition.
func eventsBroker(tb testing.TB, partitions int32, evs []*schemas.Event) (*embedded.Broker, *kadm.Client, map[string]int32) {
	tb.Helper()
	br := testenv.Start(tb).Broker
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	testenv.CreateTopics(tb, cl, map[string]int32{"events": partitions, "events.dlq": 1})
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		v, _ := schemas.JSON{}.Append(nil, e)
		recs[i] = &kgo.Record{Key: []byte(e.ResourceID), Value: v}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
	partOf := map[string]int32{}
	for _, r := range recs {
		partOf[string(r.Key)] = r.Partition
	}
	return br, adm, partOf
}

// topicRange returns where each partition of topic starts and ends now.
func topicRange(tb testing.TB, adm *kadm.Client, topic string) (from, until map[int32]int64) {
	tb.Helper()
	starts, err := adm.ListStartOffsets(context.Background(), topic)
	if err != nil {
		tb.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		tb.Fatal(err)
	}
	from, until = map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		from[o.Partition], until[o.Partition] = s.Offset, o.Offset
	})
	return from, until
}
