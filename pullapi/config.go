package pullapi

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the api section: the process's one HTTP listener: health, metrics and the
// pull API. The pull API is served when tokens are configured (or in
// firehose dev, which accepts dev-<account_id>).
type Config struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:8080; "off" disables
	// PositionKey signs the positions the pull API hands out; every API
	// replica needs the same one. At least 32 bytes; take it from the
	// environment: position_key: ${FIREHOSE_POSITION_KEY}.
	PositionKey string `yaml:"position_key"`
	// Tokens are the pull API's bearer tokens, stored as SHA-256 hashes;
	// `firehose token new --account A` makes one.
	Tokens []APIToken `yaml:"tokens"`
	// TokensFile holds more tokens in the same form (a top-level tokens:
	// list). It is read again when it changes, so tokens rotate without a
	// restart.
	TokensFile string `yaml:"tokens_file"`
	// MaxRequestsPerToken bounds one token's pull requests in flight at
	// once (default 8); more get 429 with Retry-After, so one client
	// cannot take the process from the others.
	MaxRequestsPerToken int `yaml:"max_requests_per_token"`
	// MaxRequests bounds all pull requests in flight (default 4096). A
	// request waiting at the head costs a goroutine and its connection,
	// as the window answers it from memory when events come.
	MaxRequests int `yaml:"max_requests"`
	// WindowBytes bounds the recent events the API keeps in memory,
	// decoded once and indexed by account, shared equally by the
	// partitions (default 256MiB, about 50 s of 10,000 events/s of 450
	// bytes); a request whose position is older is read from Kafka.
	WindowBytes yamlconf.ByteSize `yaml:"window_bytes"`
	// MaxConnectionsPerClient bounds the open connections of one client
	// address on each listener (default 1,024 of the 4,096 a listener
	// holds), so that one client cannot leave probes waiting. Behind a
	// proxy or load balancer every client has its address: raise it.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// StallTimeout: /healthz fails when the processor's or a connector's
	// loop has not come round for this long (default 2m), so that an
	// orchestrator restarts a wedged worker. An idle loop comes round
	// every few seconds; one waiting for an unreachable schema registry
	// does not, so a registry outage longer than this fails /healthz.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// AdminListen, if set, is a second listener for the operators'
	// endpoints: /metrics and (with Pprof) /debug/pprof/ move there, off
	// the public API's port, and /healthz and /readyz are served on both,
	// for probes and load balancers. Empty (the default): all on Listen.
	AdminListen string `yaml:"admin_listen"`
	// Pprof serves Go's profiles under /debug/pprof/ (default false). They
	// show the program's internals and a CPU profile costs CPU while it
	// runs: turn it on only where the listener is not public.
	Pprof bool `yaml:"pprof"`
}

// PullEnabled reports whether the pull API has any tokens to serve.
func (a Config) PullEnabled() bool { return len(a.Tokens) > 0 || a.TokensFile != "" }

// APIToken grants one bearer token access to one account's events.
type APIToken struct {
	Account string `yaml:"account"`
	SHA256  string `yaml:"sha256"` // hex SHA-256 of the token; the token itself is never stored
	Note    string `yaml:"note"`   // who holds it, for the humans who rotate it
}

// TokensFile is the form of api.tokens_file.
type TokensFile struct {
	Tokens []APIToken `yaml:"tokens"`
}

// LoadTokens reads a tokens file strictly, with file:line errors.
func LoadTokens(path string) ([]APIToken, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	return ParseTokens(path, data)
}

// ParseTokens is LoadTokens for bytes in memory; name is used in errors.
func ParseTokens(path string, data []byte) ([]APIToken, error) {
	root, err := yamlconf.Parse(path, data)
	if err != nil {
		return nil, err
	}
	var f TokensFile
	if root.Kind == 0 {
		return nil, nil
	}
	var errs []error
	if err := yamlconf.Decode(root, "", &f); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, yamlconf.Prefix("tokens", validTokens(f.Tokens)))
	if err := errors.Join(errs...); err != nil {
		return nil, yamlconf.Locate(path, root, err)
	}
	return f.Tokens, nil
}

// Pull API request limits: in flight per token and in all.
const (
	DefaultMaxRequestsPerToken = 8
	DefaultMaxRequests         = 4096
)

// Defaults fills the fields left empty.
func (a *Config) Defaults() {
	if a.Listen == "" {
		a.Listen = "127.0.0.1:8080"
	}
	if a.StallTimeout == 0 {
		a.StallTimeout = 2 * time.Minute
	}
	if a.MaxRequestsPerToken == 0 {
		a.MaxRequestsPerToken = DefaultMaxRequestsPerToken
	}
	if a.MaxRequests == 0 {
		a.MaxRequests = DefaultMaxRequests
	}
	if a.WindowBytes == 0 {
		a.WindowBytes = DefaultWindowBytes
	}
}

// Validate reports every problem of the section, with paths relative to it.
func (a Config) Validate() error {
	var v yamlconf.Problems
	for key, n := range map[string]int{"max_requests_per_token": a.MaxRequestsPerToken, "max_connections_per_client": a.MaxConnectionsPerClient, "max_requests": a.MaxRequests} {
		if n < 0 {
			v.Add(key, "must be positive, got %d", n)
		}
	}
	if a.WindowBytes < 1<<20 {
		v.Add("window_bytes", "must be at least 1MiB, got %d", a.WindowBytes)
	}
	if l := a.AdminListen; l != "" && l != "off" && l == a.Listen && !strings.HasSuffix(l, ":0") {
		v.Add("admin_listen", "must differ from api.listen (%s), or be empty to serve everything there", l)
	}
	if a.StallTimeout < 30*time.Second {
		v.Add("stall_timeout", "must be at least 30s, got %s", a.StallTimeout)
	}
	v.Join("tokens", validTokens(a.Tokens))
	if k := a.PositionKey; k != "" && len(k) < 32 {
		v.Add("position_key", "is %d bytes; it must be at least 32 (e.g. openssl rand -base64 48)", len(k))
	} else if k == "" && a.PullEnabled() {
		v.Add("position_key", "required when api.tokens or api.tokens_file is set: it signs the positions the pull API hands out (e.g. position_key: ${FIREHOSE_POSITION_KEY}, with 32+ random bytes)")
	}
	return v.Err()
}

// validTokens checks a list of tokens; paths start at the list's index.
func validTokens(ts []APIToken) error {
	var v yamlconf.Problems
	for i, t := range ts {
		p := fmt.Sprintf("[%d]", i)
		if t.Account == "" {
			v.Add(p+".account", "required: the account this token may read")
		}
		if len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "" {
			v.Add(p+".sha256", "must be the 64 hex digits of the token's SHA-256 (firehose token new prints it)")
		}
	}
	return v.Err()
}
