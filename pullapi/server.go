package pullapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
)

// Limits of a page.
const (
	DefaultLimit = 100
	MaxLimit     = 100
	// MaxPageBytes bounds the events of one page: a page stops before
	// the event that would take it past 4 MiB, and always holds at least
	// one event, so a page is at most 4 MiB or one event (up to the
	// events topic's 8 MiB record limit) plus its metadata.
	MaxPageBytes = 4 << 20
	// MaxPageBody is the largest answer a page can be: one event of the
	// largest record plus the metadata. Clients read up to it.
	MaxPageBody = 8<<20 + 64<<10
)

// DefaultBudget is how long a request may start new reads and wait at the
// head. A read started within the budget may run until readDeadline after
// the request came in; the rest of the one second every answer is promised
// within is for writing the answer.
const DefaultBudget = 750 * time.Millisecond

const readDeadline = 900 * time.Millisecond

// KafkaReads bounds the requests reading from Kafka at once (positions
// older than the window): past it they wait their turn within their
// budget, so that followers of old positions cannot take the CPU from
// those the window serves.
const KafkaReads = 8

// fetchTimeout bounds one fetch from a broker, which may outlive the
// request that started it (see fetch).
const fetchTimeout = 10 * time.Second

// recheck is how often a long poll reads again without news from the head
// watcher.
const recheck = 250 * time.Millisecond

// Options configure a Server.
type Options struct {
	Kafka    []kgo.Opt // brokers, TLS, SASL
	Topic    string    // the processed events topic
	Encoding string    // its encoding: json or avro
	// Codec reads the topic when its encoding is a Schema Registry one
	// (see app/codecs); nil for json and avro.
	Codec  schemas.Codec
	Signer *Signer
	Tokens *Tokens
	// Budget bounds the scan and the long poll of one request; default
	// DefaultBudget.
	Budget time.Duration
	Log    *slog.Logger
	// Limits bound requests in flight; zero fields take the config's
	// defaults.
	Limits Limits
	// WindowBytes bounds the recent events kept in memory for the
	// followers (see window.go); default DefaultWindowBytes.
	WindowBytes int
	// OnRequest, if set, hears of every answered request: its HTTP
	// status and how long it took (metrics).
	OnRequest func(status int, took time.Duration)
}

// Limits bound the requests a Server answers at once. A request over a
// limit is answered at once with 429 and Retry-After: 1, so a client that
// opens too many long polls slows only itself.
type Limits struct {
	PerToken int // requests of one token in flight; default 8
	Total    int // all requests in flight; default 256
}

// Server answers GET /v1/stream. It keeps no state of its own beyond caches:
// every replica with the same key and tokens serves every client, and a
// position stays good across restarts.
type Server struct {
	o      Options
	cl     *kgo.Client
	adm    *kadm.Client
	codec  schemas.Codec // nil for json, which is read without decoding
	decomp kgo.Decompressor
	win    *window
	probe  headProbe
	reads  chan struct{} // slots for requests' own reads from Kafka
	// followCl is the window's client: its fetches wait at the broker
	// for new events, and a broker answers a connection's requests in
	// order, so requests' reads must not queue behind them.
	followCl *kgo.Client

	metaMu sync.Mutex
	meta   *topicMeta

	headMu  sync.Mutex
	changed chan struct{} // closed and replaced when new events arrive

	flightMu sync.Mutex
	inFlight map[string]int // by token
	total    int

	listMu sync.Mutex
	listed map[string]listedAt // "tail" and "top" offsets, shared briefly

	failLog rateLimitedLog
}

// listedAt is a ListOffsets answer and when it was taken.
type listedAt struct {
	offsets kadm.ListedOffsets
	at      time.Time
}

// listedTTL is how long requests share the offsets that tail and top
// resolve to, instead of a ListOffsets each: a thousand clients starting
// at once cost the brokers one request.
const listedTTL = 250 * time.Millisecond

type topicMeta struct {
	id      [16]byte
	leaders []int32 // by partition
	at      time.Time
}

// New connects to Kafka; Run must run for long polls to wake early and
// for the tokens file to be watched.
func New(o Options) (*Server, error) {
	if o.Signer == nil || o.Tokens == nil || o.Topic == "" {
		return nil, errors.New("pullapi: Signer, Tokens and Topic are required")
	}
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Limits.PerToken <= 0 {
		o.Limits.PerToken = DefaultMaxRequestsPerToken
	}
	if o.Limits.Total <= 0 {
		o.Limits.Total = DefaultMaxRequests
	}
	s := &Server{o: o, decomp: kgo.DefaultDecompressor(), changed: make(chan struct{}), win: newWindow(o.WindowBytes), reads: make(chan struct{}, KafkaReads),
		inFlight: map[string]int{}, listed: map[string]listedAt{}, failLog: rateLimitedLog{log: o.Log, every: time.Second}}
	switch {
	case o.Codec != nil:
		s.codec = o.Codec
	case o.Encoding == "avro":
		c, err := schemas.RecordCodecFor("avro")
		if err != nil {
			return nil, err
		}
		s.codec = c
	}
	cl, err := kgo.NewClient(o.Kafka...)
	if err != nil {
		return nil, err
	}
	fcl, err := kgo.NewClient(o.Kafka...)
	if err != nil {
		cl.Close()
		return nil, err
	}
	s.cl, s.adm, s.followCl = cl, kadm.NewClient(cl), fcl
	return s, nil
}

// Close releases the Kafka client of a server that will not Run; Run
// closes it itself.
func (s *Server) Close() {
	s.cl.Close()
	s.followCl.Close()
}

// Run reads the head of the topic into the window, waking long polls
// when events arrive, and watches the tokens file, until ctx ends. It
// closes the Kafka client on its way out.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	done := make(chan struct{})
	go func() { defer close(done); s.o.Tokens.Watch(ctx, 2*time.Second) }()
	defer func() { <-done }()
	s.win.start(ctx)
	defer s.win.stop() // the backfills under way end with ctx
	s.follow(ctx)
	return nil
}

func (s *Server) changedCh() <-chan struct{} {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	return s.changed
}

// Register mounts GET /v1/stream on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("GET /v1/stream", s)
}

// errExpired is answered as 410.
var errExpired = errorf(http.StatusGone, "position_expired", "the position is older than the stream's retention; events were lost to this client. Restart from position=tail")
