package pullapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/internal/config"
	"github.com/firehose/firehose/internal/dlq"
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
	// (see internal/registry); nil for json and avro.
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
		o.Limits.PerToken = config.DefaultMaxRequestsPerToken
	}
	if o.Limits.Total <= 0 {
		o.Limits.Total = config.DefaultMaxRequests
	}
	s := &Server{o: o, decomp: kgo.DefaultDecompressor(), changed: make(chan struct{}),
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
	s.cl, s.adm = cl, kadm.NewClient(cl)
	return s, nil
}

// Run watches the head of the topic, waking long polls when events arrive,
// and the tokens file, until ctx ends. It closes the Kafka clients on its
// way out.
func (s *Server) Run(ctx context.Context) error {
	defer s.cl.Close()
	watch, err := kgo.NewClient(append(append([]kgo.Opt(nil), s.o.Kafka...),
		kgo.ConsumeTopics(s.o.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return err
	}
	defer watch.Close()
	done := make(chan struct{})
	go func() { defer close(done); s.o.Tokens.Watch(ctx, 2*time.Second) }()
	defer func() { <-done }()
	for {
		fs := watch.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.NumRecords() > 0 {
			s.headMu.Lock()
			close(s.changed)
			s.changed = make(chan struct{})
			s.headMu.Unlock()
		}
	}
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

// apiError is an error with its HTTP status and a stable code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := http.StatusOK
	if s.o.OnRequest != nil {
		defer func() { s.o.OnRequest(status, time.Since(start)) }()
	}
	fail := func(ae *apiError) {
		status = ae.status
		writeError(w, ae)
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	account, known := s.o.Tokens.Account(token)
	if !ok || !known {
		fail(errorf(http.StatusUnauthorized, "unauthorized", "send a valid token as Authorization: Bearer <token>"))
		return
	}
	if ae := s.acquire(token); ae != nil {
		w.Header().Set("Retry-After", "1")
		fail(ae)
		return
	}
	defer s.release(token)
	page, err := s.serve(r, account, start)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			s.failLog.Warn("pull API request failed", "err", err)
			ae = errorf(http.StatusServiceUnavailable, "unavailable", "the stream cannot be read right now; retry the same position")
		}
		fail(ae)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="firehose"`)
	}
	w.WriteHeader(e.status)
	b := []byte(`{"error":{"status":`)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"code":`...)
	b = schemas.AppendString(b, e.code)
	b = append(b, `,"message":`...)
	b = schemas.AppendString(b, e.msg)
	b = append(b, "}}\n"...)
	_, _ = w.Write(b)
}

// acquire takes a place for one request of token, or says why there is
// none.
func (s *Server) acquire(token string) *apiError {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight[token] >= s.o.Limits.PerToken {
		return errorf(http.StatusTooManyRequests, "too_many_requests", "this token has %d requests in flight, its limit; wait for an answer before asking again", s.o.Limits.PerToken)
	}
	if s.total >= s.o.Limits.Total {
		return errorf(http.StatusTooManyRequests, "too_many_requests", "the server is answering %d requests, its limit; retry in a second", s.o.Limits.Total)
	}
	s.inFlight[token]++
	s.total++
	return nil
}

func (s *Server) release(token string) {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight[token]--; s.inFlight[token] <= 0 {
		delete(s.inFlight, token)
	}
	s.total--
}

// listOffsets lists the start ("tail") or last stable ("top") offsets of
// the topic, shared between requests for listedTTL.
func (s *Server) listOffsets(ctx context.Context, which string) (kadm.ListedOffsets, error) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if l, ok := s.listed[which]; ok && time.Since(l.at) < listedTTL {
		return l.offsets, nil
	}
	var listed kadm.ListedOffsets
	var err error
	if which == "top" {
		listed, err = s.adm.ListCommittedOffsets(ctx, s.o.Topic)
	} else {
		listed, err = s.adm.ListStartOffsets(ctx, s.o.Topic)
	}
	if err != nil {
		return nil, err
	}
	s.listed[which] = listedAt{listed, time.Now()}
	return listed, nil
}

// rateLimitedLog writes at most one line per interval and counts the ones
// it left out, so a flood of failures cannot flood the log.
type rateLimitedLog struct {
	log        *slog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *rateLimitedLog) Warn(msg string, args ...any) {
	l.mu.Lock()
	if time.Since(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = time.Now(), 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_lines_suppressed", n)
	}
	l.log.Warn(msg, args...)
}

func (s *Server) serve(r *http.Request, account string, start time.Time) ([]byte, error) {
	q := r.URL.Query()
	limit := DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return nil, errorf(http.StatusBadRequest, "invalid_limit", "limit must be a whole number from 1 to %d, got %q", MaxLimit, v)
		}
		limit = n
	}
	pos := q.Get("position")
	if pos == "" {
		return nil, errorf(http.StatusBadRequest, "invalid_position", "position is required: tail (the oldest retained event), top (from now on) or the position of an earlier answer")
	}
	// ctx bounds every read; soft is when no new read starts.
	soft := start.Add(s.o.Budget)
	ctx, cancel := context.WithDeadline(r.Context(), start.Add(max(readDeadline, s.o.Budget)))
	defer cancel()
	m, err := s.metadata(ctx, false)
	if err != nil {
		return nil, err
	}
	offsets, err := s.resolve(ctx, account, pos, m)
	if err != nil {
		return nil, err
	}
	page, err := s.scan(ctx, soft, account, offsets, limit)
	if errors.Is(err, errExpired) && pos == "tail" {
		// The shared start offsets were listed before retention moved
		// them: tail never expires, so list them afresh.
		s.listMu.Lock()
		delete(s.listed, "tail")
		s.listMu.Unlock()
		if offsets, err = s.resolve(ctx, account, pos, m); err != nil {
			return nil, err
		}
		page, err = s.scan(ctx, soft, account, offsets, limit)
	}
	return page, err
}

// resolve turns the position parameter into an offset per partition.
func (s *Server) resolve(ctx context.Context, account, pos string, m *topicMeta) ([]int64, error) {
	n := len(m.leaders)
	var listed kadm.ListedOffsets
	var err error
	switch pos {
	case "tail", "top":
		listed, err = s.listOffsets(ctx, pos)
	default:
		p, derr := s.o.Signer.Decode(pos, account)
		switch {
		case errors.Is(derr, ErrOtherAccount):
			return nil, errorf(http.StatusForbidden, "other_account", "this position belongs to another account's stream; start from tail or top")
		case errors.Is(derr, ErrForgedPosition):
			return nil, errorf(http.StatusBadRequest, "invalid_position", "the position fails its integrity check; send a position exactly as an earlier answer gave it, or tail or top")
		case derr != nil:
			return nil, errorf(http.StatusBadRequest, "invalid_position", "the position is malformed; send a position exactly as an earlier answer gave it, or tail or top")
		}
		if len(p.Offsets) > n {
			return nil, errorf(http.StatusGone, "position_expired", "the stream was recreated since this position was made; restart from position=tail")
		}
		if len(p.Offsets) == n {
			return p.Offsets, nil
		}
		// The topic gained partitions: read them from their start.
		listed, err = s.listOffsets(ctx, "tail")
		if err != nil {
			return nil, err
		}
		out := make([]int64, n)
		copy(out, p.Offsets)
		for i := len(p.Offsets); i < n; i++ {
			o, ok := listed.Lookup(s.o.Topic, int32(i))
			if !ok || o.Err != nil {
				return nil, fmt.Errorf("list start offset of partition %d: %v", i, o.Err)
			}
			out[i] = o.Offset
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		o, ok := listed.Lookup(s.o.Topic, int32(i))
		if !ok || o.Err != nil {
			return nil, fmt.Errorf("list offsets of partition %d: %v", i, o.Err)
		}
		out[i] = o.Offset
	}
	return out, nil
}

// metadata returns the topic's partitions and leaders, cached for 30 s or
// until a fetch finds a leader moved.
func (s *Server) metadata(ctx context.Context, refresh bool) (*topicMeta, error) {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if s.meta != nil && !refresh && time.Since(s.meta.at) < 30*time.Second {
		return s.meta, nil
	}
	md, err := s.adm.Metadata(ctx, s.o.Topic)
	if err != nil {
		return nil, err
	}
	td, ok := md.Topics[s.o.Topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return nil, fmt.Errorf("topic %s: %v", s.o.Topic, td.Err)
	}
	m := &topicMeta{id: td.ID, leaders: make([]int32, len(td.Partitions)), at: time.Now()}
	for p, d := range td.Partitions {
		if int(p) >= len(m.leaders) {
			return nil, fmt.Errorf("topic %s: partition %d of %d", s.o.Topic, p, len(td.Partitions))
		}
		m.leaders[p] = d.Leader
	}
	s.meta = m
	return m, nil
}

// item is one event of a page.
type item struct {
	data       []byte // the event's JSON
	eventType  string
	resourceID string
	sequence   int64
	partition  int32
	offset     int64
	hasSeq     bool
}

// errExpired is answered as 410.
var errExpired = errorf(http.StatusGone, "position_expired", "the position is older than the stream's retention; events were lost to this client. Restart from position=tail")

// scan reads from offsets until it has limit events of account, reaches the
// head, or runs out of budget; at the head with nothing found it waits for
// new events until the budget ends.
func (s *Server) scan(ctx context.Context, soft time.Time, account string, offsets []int64, limit int) ([]byte, error) {
	n := len(offsets)
	next := append([]int64(nil), offsets...)
	head := make([]int64, n) // last stable offset seen per partition; -1 unknown
	for i := range head {
		head[i] = -1
	}
	held := make([]bool, n) // the partition's next event is this account's, beyond the limit
	var items []item
	for {
		changed := s.changedCh()
		before := append([]int64(nil), next...)
		err := s.fetch(ctx, account, next, head, held, limit, &items)
		if errors.Is(err, errExpired) {
			return nil, errExpired
		}
		if err != nil {
			if ctx.Err() != nil {
				break // out of budget: answer with what was found
			}
			if len(items) == 0 && !advanced(offsets, next) {
				return nil, err
			}
			break
		}
		if len(items) >= limit || !slices.Contains(held, false) {
			break // full, by count or by bytes
		}
		if atHead(next, head) {
			if len(items) > 0 {
				break
			}
			// Woken by the head watcher, or every recheck in case it
			// is still starting or lost a notice.
			wait := time.NewTimer(min(time.Until(soft), recheck))
			select {
			case <-changed:
				wait.Stop()
				continue
			case <-wait.C:
				if time.Now().Before(soft) {
					continue
				}
			case <-ctx.Done():
			}
			break
		}
		if !advanced(before, next) {
			// Not at the head yet nothing readable: a transaction in
			// flight or a leader moving. Do not spin.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil || !time.Now().Before(soft) {
			break
		}
	}
	top := atHead(next, head)
	for _, h := range held {
		top = top && !h
	}
	return s.page(account, items, next, top), nil
}

func advanced(from, to []int64) bool {
	for i := range from {
		if to[i] != from[i] {
			return true
		}
	}
	return false
}

func atHead(next, head []int64) bool {
	for i := range next {
		if head[i] < 0 || next[i] < head[i] {
			return false
		}
	}
	return true
}

// fetch issues one fetch per leader for the partitions not held, and takes
// what comes back into items, advancing next.
func (s *Server) fetch(ctx context.Context, account string, next, head []int64, held []bool, limit int, items *[]item) error {
	m, err := s.metadata(ctx, false)
	if err != nil {
		return err
	}
	if len(m.leaders) != len(next) {
		// Partitions were added under us; the next request sees them.
		m = &topicMeta{id: m.id, leaders: m.leaders[:min(len(m.leaders), len(next))]}
	}
	byLeader := map[int32]*kmsg.FetchRequest{}
	for p, leader := range m.leaders {
		if held[p] {
			continue
		}
		req := byLeader[leader]
		if req == nil {
			req = kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.MaxWaitMillis = 0
			req.MinBytes = 1
			req.MaxBytes = 1 << 20
			req.IsolationLevel = 1
			req.SessionEpoch = -1
			t := kmsg.NewFetchRequestTopic()
			t.Topic, t.TopicID = s.o.Topic, m.id
			req.Topics = append(req.Topics, t)
			byLeader[leader] = req
		}
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition = int32(p)
		fp.FetchOffset = next[p]
		fp.PartitionMaxBytes = 256 << 10
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, fp)
	}
	type result struct {
		resp *kmsg.FetchResponse
		err  error
	}
	// The broker requests run on a context of their own, bounded by
	// fetchTimeout: a request's deadline firing while franz-go reads a
	// response closes the broker connection, and every other request on
	// it fails (503). This request stops waiting at its own deadline;
	// the fetch finishes on its goroutine, into the buffered channel.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	results := make(chan result, len(byLeader))
	var pending sync.WaitGroup
	for leader, req := range byLeader {
		pending.Go(func() {
			resp, err := s.cl.Broker(int(leader)).Request(rctx, req)
			r, _ := resp.(*kmsg.FetchResponse)
			results <- result{r, err}
		})
	}
	go func() { pending.Wait(); rcancel() }()
	// Take the responses in a fixed order of partitions so a page is
	// deterministic for a given position.
	var resps []*kmsg.FetchResponse
	var firstErr error
	for range byLeader {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err == nil && r.resp != nil && r.resp.ErrorCode != 0 {
			r.err = kerr.ErrorForCode(r.resp.ErrorCode)
		}
		if r.err != nil {
			firstErr = cmpErr(firstErr, r.err)
			continue
		}
		resps = append(resps, r.resp)
	}
	parts := make([]*kmsg.FetchResponseTopicPartition, len(next))
	for _, r := range resps {
		for ti := range r.Topics {
			for pi := range r.Topics[ti].Partitions {
				rp := &r.Topics[ti].Partitions[pi]
				if int(rp.Partition) < len(parts) {
					parts[rp.Partition] = rp
				}
			}
		}
	}
	stale := false
	for p, rp := range parts {
		if rp == nil {
			continue
		}
		if ctx.Err() != nil {
			// Out of time: the partitions not taken keep their offsets.
			break
		}
		if err := s.take(ctx, account, int32(p), rp, next, head, held, limit, items); err != nil {
			if errors.Is(err, errExpired) {
				return err
			}
			if errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
				stale = true
			}
			firstErr = cmpErr(firstErr, err)
		}
	}
	if stale {
		_, _ = s.metadata(ctx, true)
	}
	return firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// take processes one partition of a fetch response.
func (s *Server) take(ctx context.Context, account string, p int32, rp *kmsg.FetchResponseTopicPartition, next, head []int64, held []bool, limit int, items *[]item) error {
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code {
		return errExpired
	}
	fp, after := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         next[p],
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          s.o.Topic,
		Partition:      p,
	}, rp, s.decomp, nil)
	if fp.Err != nil && len(fp.Records) == 0 {
		return fp.Err
	}
	h := rp.LastStableOffset
	if h < 0 {
		h = rp.HighWatermark
	}
	head[p] = h
	if s.codec != nil {
		// Schemas the registry has to tell first. Out of time, the
		// partition keeps its offset and the page goes without it.
		err := schemas.Resolve(ctx, s.codec, func(yield func([]byte) bool) {
			for _, rec := range fp.Records {
				if !yield(rec.Value) {
					return
				}
			}
		})
		if err != nil {
			return nil
		}
	}
	for _, rec := range fp.Records {
		if len(rec.Headers) > 0 && dlq.Has(rec, dlq.HeaderConnector) {
			next[p] = rec.Offset + 1 // redriven for one connector, not a new event
			continue
		}
		it, acc, err := s.decode(rec.Value)
		if err != nil {
			s.o.Log.Warn("pull API skipped an unreadable record", "topic", s.o.Topic, "partition", p, "offset", rec.Offset, "err", err)
			next[p] = rec.Offset + 1
			continue
		}
		if acc != account {
			next[p] = rec.Offset + 1
			continue
		}
		if len(*items) >= limit || len(*items) > 0 && pageBytes(*items)+len(it.data) > MaxPageBytes {
			held[p] = true
			return nil
		}
		it.partition, it.offset = p, rec.Offset
		*items = append(*items, it)
		next[p] = rec.Offset + 1
	}
	// Past control records and aborted transactions too.
	next[p] = max(next[p], after)
	return nil
}

// pageBytes is the size of the events gathered for a page.
func pageBytes(items []item) int {
	n := 0
	for _, it := range items {
		n += len(it.data)
	}
	return n
}

// decode reads the account and the item of one record. JSON is read in
// place: the account is found without parsing the rest, so another
// account's events cost little to skip.
func (s *Server) decode(v []byte) (item, string, error) {
	if s.codec != nil {
		e, err := s.codec.Decode(v)
		if err != nil {
			return item{}, "", err
		}
		return item{data: schemas.AppendJSON(nil, e, nil), eventType: e.EventType, resourceID: e.ResourceID, sequence: e.Sequence, hasSeq: true}, e.AccountID, nil
	}
	acc := gjson.GetBytes(v, "account_id")
	if acc.Type != gjson.String {
		return item{}, "", errors.New("no account_id")
	}
	return item{data: v}, acc.Str, nil
}

// metaString is the text of a top-level field for an item's meta: a
// string's value, nothing for null or no field, else the value's JSON.
func metaString(v []byte) string {
	switch {
	case len(v) == 0 || v[0] == 'n':
		return ""
	case v[0] == '"':
		return schemas.StringValue(v)
	}
	return string(v)
}

// metaInt is the value of a top-level number field, and whether it is
// one; a fraction or exponent is cut to an integer.
func metaInt(v []byte) (int64, bool) {
	if len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, true
	}
	f, _ := strconv.ParseFloat(string(v), 64)
	return int64(f), true
}

// page renders the answer.
func (s *Server) page(account string, items []item, next []int64, top bool) []byte {
	size := 96
	for _, it := range items {
		size += len(it.data) + 128
	}
	b := make([]byte, 0, size)
	b = append(b, `{"items":[`...)
	count := 0
	for _, it := range items {
		if it.eventType == "" && s.codec == nil {
			// Events are written by the processor, valid; but anyone
			// can write to the topic. One iterative pass checks the
			// grammar and the depth and reads the fields the meta needs
			// (the first of each, as a path lookup would).
			var eventType, resourceID, sequence []byte
			ok := schemas.TopMembers(it.data, func(key string, v []byte) {
				switch {
				case key == "event_type" && eventType == nil:
					eventType = v
				case key == "resource_id" && resourceID == nil:
					resourceID = v
				case key == "sequence" && sequence == nil:
					sequence = v
				}
			})
			if !ok {
				s.o.Log.Warn("pull API skipped a record that is not JSON", "topic", s.o.Topic, "partition", it.partition, "offset", it.offset)
				continue
			}
			it.eventType, it.resourceID = metaString(eventType), metaString(resourceID)
			it.sequence, it.hasSeq = metaInt(sequence)
		}
		if count > 0 {
			b = append(b, ',')
		}
		count++
		b = append(b, `{"data":`...)
		b = append(b, it.data...)
		b = append(b, `,"meta":{"event_type":`...)
		b = schemas.AppendString(b, it.eventType)
		b = append(b, `,"resource_id":`...)
		b = schemas.AppendString(b, it.resourceID)
		if it.hasSeq {
			b = append(b, `,"sequence":`...)
			b = strconv.AppendInt(b, it.sequence, 10)
		}
		b = append(b, `}}`...)
	}
	b = append(b, `],"meta":{"position":`...)
	b = schemas.AppendString(b, s.o.Signer.Encode(Position{Account: account, Offsets: next}))
	b = append(b, `,"top":`...)
	b = strconv.AppendBool(b, top)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, "}}\n"...)
	return b
}
