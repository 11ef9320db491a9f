// Package embedded runs an in-process Kafka-protocol broker (franz-go's
// kfake) on loopback, for firehose dev and for tests. It is a real broker
// as far as any client can tell: kcat, kgo and kadm all speak to it.
package embedded

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Options configure Start.
type Options struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// Host is the address to listen on (default 127.0.0.1); 0.0.0.0 in a
	// container that others reach through a published port.
	Host string
	// Advertise is the host:port clients are told to connect to (default:
	// the listener's address): the published address of a container, say.
	Advertise string
	// DataDir, if set, persists the log there so data survives restarts.
	DataDir string
	// RetentionCheck is how often retention and compaction run
	// (log.cleaner.backoff.ms); default one minute.
	RetentionCheck time.Duration
	// Extra kfake options, for tests that need SASL, TLS or control hooks.
	Extra []kfake.Opt
}

// Broker is a running embedded broker.
type Broker struct {
	*kfake.Cluster
	Addr string
}

// Start starts a one-broker cluster on 127.0.0.1.
func Start(o Options) (*Broker, error) {
	if o.RetentionCheck == 0 {
		o.RetentionCheck = time.Minute
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(o.Port),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			if o.Host != "" {
				_, port, _ := net.SplitHostPort(address)
				address = net.JoinHostPort(o.Host, port)
			}
			ln, err := net.Listen(network, address)
			if err != nil || o.Advertise == "" {
				return ln, err
			}
			if _, _, err := net.SplitHostPort(o.Advertise); err != nil {
				ln.Close()
				return nil, fmt.Errorf("advertised address %q: %w", o.Advertise, err)
			}
			return advertised{ln, advertisedAddr(o.Advertise)}, nil
		}),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": strconv.FormatInt(o.RetentionCheck.Milliseconds(), 10),
			// The raw topic accepts events over the processor's limit, so
			// they reach the DLQ with a reason instead of being refused.
			"message.max.bytes": "8388608",
		}),
		kfake.DefaultNumPartitions(6),
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Join(o.DataDir, "kafka")))
	}
	opts = append(opts, o.Extra...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		if o.Port != 0 {
			return nil, fmt.Errorf("start embedded broker on 127.0.0.1:%d (is another broker running there?): %w", o.Port, err)
		}
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	return &Broker{Cluster: c, Addr: c.ListenAddrs()[0]}, nil
}

// advertised is a listener that tells the broker's metadata another
// address than the one it listens on.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

// advertisedAddr is a host:port as given, not resolved: a name stays a
// name in the metadata.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// RefuseProduce makes the broker answer every produce request with the
// error code while refuse returns true, as a cluster that is failing
// writes does; tests use it. It replaces any earlier produce control.
func (b *Broker) RefuseProduce(code int16, refuse func() bool) {
	b.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		if !refuse() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}
