package kafkaclient

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the kafka section: how to reach the cluster.
type Config struct {
	Brokers  []string `yaml:"brokers"`   // host:port seeds; required
	ClientID string   `yaml:"client_id"` // default "firehose"
	TLS      TLS      `yaml:"tls"`
	SASL     SASL     `yaml:"sasl"`
	// Rack is this worker's rack (client.rack): with brokers configured
	// for it (replica.selector.class = RackAwareReplicaSelector), fetches
	// go to the nearest replica, e.g. in the same availability zone.
	Rack string `yaml:"rack"`
	// InstanceID turns on static group membership: each consumer group
	// of the process (the processor's, each connector's) gets the member
	// instance id <InstanceID>-<processor|connector name>. A worker that
	// restarts with the same id takes its partitions back at once,
	// without a rebalance, and replaces a crashed incarnation the broker
	// still counts as a member. Every worker of a group needs its own id,
	// stable across restarts (a StatefulSet pod name, or a slot number);
	// two live workers with one id fence each other. A worker stopped
	// for good keeps its partitions until SessionTimeout. Empty (the
	// default): dynamic membership. run --instance-id overrides it.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the broker waits for a worker's
	// heartbeat before it gives the worker's partitions to others
	// (default 45s; the broker bounds it, 6s to 30m on Kafka's defaults).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout is how long a rebalance waits for every member to
	// rejoin (default 60s). A connector's revoke waits for its
	// deliveries within it.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
}

// TLS configures encryption to the brokers. Files are PEM.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures authentication; Mechanism is one of SASLMechanisms and
// empty disables SASL.
//   - PLAIN, SCRAM-SHA-256, SCRAM-SHA-512: Username and Password (put the
//     password in the environment: password: ${KAFKA_PASSWORD}).
//   - OAUTHBEARER: Token (a static token, e.g. ${KAFKA_OAUTH_TOKEN}) or
//     TokenFile, read again at every authentication, so a sidecar that
//     refreshes the file refreshes the token.
//   - AWS_MSK_IAM: credentials from the AWS default chain (environment,
//     shared files, IRSA, instance role), the same loader S3 and Kinesis
//     use; the region comes from the broker's host name
//     (…kafka.<region>.amazonaws.com) or AWS_REGION.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// SASLMechanisms are the values SASL.Mechanism accepts.
var SASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"}

// ProducerMaxBytes is the largest record batch Firehose's producers send
// (kgo.ProducerBatchMaxBytes), and so the largest record.
const ProducerMaxBytes = 8 << 20

// Consumer group timeouts, as Kafka's clients default them.
const (
	DefaultSessionTimeout   = 45 * time.Second
	DefaultRebalanceTimeout = 60 * time.Second
)

// Defaults fills the fields left empty.
func (c *Config) Defaults() {
	if c.ClientID == "" {
		c.ClientID = "firehose"
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
}

// instanceIDPattern is what kafka.instance_id may hold: Kafka accepts
// these characters in a group instance id.
var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Validate reports every problem of the section, with paths relative to it.
func (c Config) Validate() error {
	var v yamlconf.Problems
	if len(c.Brokers) == 0 {
		v.Add("brokers", "at least one broker is required, e.g. [\"127.0.0.1:9092\"]")
	}
	for i, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			v.Add(fmt.Sprintf("brokers[%d]", i), "must be host:port, got %q", b)
		}
	}
	v.Join("sasl", c.SASL.Validate())
	if c.SessionTimeout < time.Second {
		v.Add("session_timeout", "must be at least 1s, got %v", c.SessionTimeout)
	}
	if c.RebalanceTimeout < time.Second {
		v.Add("rebalance_timeout", "must be at least 1s, got %v", c.RebalanceTimeout)
	}
	if id := c.InstanceID; id != "" && !instanceIDPattern.MatchString(id) {
		v.Add("instance_id", "must be letters, digits, '.', '_' and '-' (at most 200), got %q", id)
	}
	v.Join("tls", c.TLS.Validate())
	return v.Err()
}

// Validate reports a certificate without its key, or a key without its
// certificate.
func (t TLS) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return yamlconf.Errorf("", "cert_file and key_file go together")
	}
	return nil
}

// Validate reports what the mechanism lacks or refuses.
func (s SASL) Validate() error {
	var v yamlconf.Problems
	switch s.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			v.Add("username", "required with mechanism %s", s.Mechanism)
		}
	case "OAUTHBEARER":
		if (s.Token == "") == (s.TokenFile == "") {
			v.Add("token", "OAUTHBEARER needs one of token and token_file")
		}
	case "AWS_MSK_IAM":
		if s.Username != "" || s.Password != "" || s.TokenFile != "" || s.Token != "" {
			v.Add("mechanism", "AWS_MSK_IAM takes its credentials from the AWS default chain; remove username, password and token")
		}
	default:
		v.OneOf("mechanism", s.Mechanism, SASLMechanisms)
	}
	return v.Err()
}
