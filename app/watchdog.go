package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// groupWatchdog notices consumer groups of this process that make no
// progress: a group that stays out of the Stable state (rebalancing, or
// waiting for members that do not answer) for longer than stall. A member
// killed while it was joining can hold a group's rebalance until the
// broker's timeouts run out, and nothing is consumed meanwhile; no member
// can make the broker forget another, so the watchdog makes it visible
// instead: an error log naming the group's state and members, and an
// unhealthy /healthz, so that an orchestrator restarts the worker. A worker
// restarted with its static instance id (kafka.instance_id) replaces its
// own stale membership at once.
type groupWatchdog struct {
	adm    *kadm.Client
	groups []string
	stall  time.Duration
	every  time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	since   map[string]time.Time // when each group left Stable
	stalled map[string]string    // why, for groups stalled now
	logged  map[string]time.Time // when each stall was last logged
}

func newGroupWatchdog(adm *kadm.Client, groups []string, stall time.Duration, log *slog.Logger) *groupWatchdog {
	return &groupWatchdog{
		adm: adm, groups: groups, stall: stall, log: log, now: time.Now,
		every: min(max(stall/4, time.Second), 15*time.Second),
		since: map[string]time.Time{}, stalled: map[string]string{}, logged: map[string]time.Time{},
	}
}

// Run checks the groups every few seconds until ctx ends.
func (w *groupWatchdog) Run(ctx context.Context) error {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.check(ctx)
		}
	}
}

// check describes the groups once and updates what is stalled.
func (w *groupWatchdog) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.every)
	defer cancel()
	described, err := w.adm.DescribeGroups(ctx, w.groups...)
	if err != nil {
		return // the broker is unreachable: the clients report that themselves
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.groups {
		d, ok := described[g]
		// Stable is progress; Empty and Dead are a group nobody is in yet
		// or any more, which this process's members are about to join.
		if !ok || d.Err != nil || d.State == "Stable" || d.State == "Empty" || d.State == "Dead" {
			delete(w.since, g)
			delete(w.stalled, g)
			continue
		}
		since, ok := w.since[g]
		if !ok {
			w.since[g] = now
			continue
		}
		if now.Sub(since) < w.stall {
			continue
		}
		var members []string
		for _, m := range d.Members {
			members = append(members, m.ClientID+"@"+m.ClientHost)
		}
		slices.Sort(members)
		why := fmt.Sprintf("group %s has been %s for %v, longer than session_timeout + rebalance_timeout (%v); members: %s",
			g, d.State, now.Sub(since).Round(time.Second), w.stall, strings.Join(members, ", "))
		w.stalled[g] = why
		if now.Sub(w.logged[g]) >= time.Minute {
			w.logged[g] = now
			w.log.Error("consumer group makes no progress; restart its workers (with static membership a restarted worker replaces its stale member)", "group", g, "state", d.State, "for", now.Sub(since).Round(time.Second), "members", members)
		}
	}
}

// Health returns why the process is unhealthy, or nil.
func (w *groupWatchdog) Health() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.stalled) == 0 {
		return nil
	}
	var errs []error
	for _, g := range w.groups {
		if why, ok := w.stalled[g]; ok {
			errs = append(errs, errors.New(why))
		}
	}
	return errors.Join(errs...)
}
