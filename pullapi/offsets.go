package pullapi

// Where a request starts: the topic's partitions and leaders, the listed
// tail and top offsets shared between requests, and a position resolved
// to an offset per partition.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

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
