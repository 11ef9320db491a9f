// Package topology declares Firehose's topics and reconciles a cluster with
// them: Plan compares, Apply creates and alters. Apply is idempotent and
// never lowers a partition count (Kafka cannot, and per-key order would
// break if it could).
package topology

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Spec is what one topic must look like.
type Spec struct {
	Role              string // raw, events, dlq or state
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// Specs returns the four topic specs of a config, in data-flow order.
func Specs(t Config) []Spec {
	mk := func(role string, tp Topic) Spec {
		return Spec{Role: role, Name: tp.Name, Partitions: tp.Partitions, ReplicationFactor: tp.ReplicationFactor, Configs: maps.Clone(tp.Configs)}
	}
	return []Spec{mk("raw", t.Raw), mk("events", t.Events), mk("dlq", t.DLQ), mk("state", t.State)}
}

// Action is the kind of a Change.
type Action string

// Actions a plan may hold. Keep is only informational: a partition count
// that is higher on the cluster than in config is left alone.
const (
	Create        Action = "create"
	AddPartitions Action = "add-partitions"
	AlterConfigs  Action = "alter-configs"
	Keep          Action = "keep"
)

// Change is one difference between config and cluster.
type Change struct {
	Action Action
	Spec   Spec
	// From and To describe the change: partition counts for
	// AddPartitions and Keep, and per config key the current value
	// (nil when unset) for AlterConfigs.
	FromPartitions int32
	Configs        map[string]ConfigDiff
}

// ConfigDiff is one topic config that differs.
type ConfigDiff struct {
	Current *string
	Want    string
}

// Plan is the list of changes that would make the cluster match the specs.
type Plan struct {
	Changes []Change
}

// Empty reports whether nothing needs to change (Keep entries aside).
func (p *Plan) Empty() bool {
	for _, c := range p.Changes {
		if c.Action != Keep {
			return false
		}
	}
	return true
}

// MakePlan compares the specs with the cluster.
func MakePlan(ctx context.Context, cl *kgo.Client, specs []Spec) (*Plan, error) {
	adm := kadm.NewClient(cl)
	partitions, err := partitionCounts(ctx, cl, specs)
	if err != nil {
		return nil, err
	}
	var existing []string
	for _, s := range specs {
		if _, ok := partitions[s.Name]; ok {
			existing = append(existing, s.Name)
		}
	}
	current := map[string]map[string]*string{}
	if len(existing) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
		if err != nil {
			return nil, fmt.Errorf("describe topic configs: %w", err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return nil, fmt.Errorf("describe configs of %s: %w", rc.Name, rc.Err)
			}
			m := map[string]*string{}
			for _, c := range rc.Configs {
				m[c.Key] = c.Value
			}
			current[rc.Name] = m
		}
	}
	p := new(Plan)
	for _, s := range specs {
		if !slices.Contains(existing, s.Name) {
			p.Changes = append(p.Changes, Change{Action: Create, Spec: s})
			continue
		}
		have := partitions[s.Name]
		switch {
		case have < s.Partitions:
			p.Changes = append(p.Changes, Change{Action: AddPartitions, Spec: s, FromPartitions: have})
		case have > s.Partitions:
			p.Changes = append(p.Changes, Change{Action: Keep, Spec: s, FromPartitions: have})
		}
		diffs := map[string]ConfigDiff{}
		for k, want := range s.Configs {
			cur := current[s.Name][k]
			if cur == nil || *cur != want {
				diffs[k] = ConfigDiff{Current: cur, Want: want}
			}
		}
		if len(diffs) > 0 {
			p.Changes = append(p.Changes, Change{Action: AlterConfigs, Spec: s, Configs: diffs})
		}
	}
	return p, nil
}

// partitionCounts asks the cluster directly (not kgo's metadata cache, which
// may still say a topic created a moment ago is unknown) how many
// partitions each existing topic of specs has.
func partitionCounts(ctx context.Context, cl *kgo.Client, specs []Spec) (map[string]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, s := range specs {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(s.Name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make(map[string]int32)
	for _, t := range resp.Topics {
		err := kerr.ErrorForCode(t.ErrorCode)
		switch {
		case err == nil:
			out[*t.Topic] = int32(len(t.Partitions))
		case errors.Is(err, kerr.UnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("describe topic %s: %w", *t.Topic, err)
		}
	}
	return out, nil
}

// Apply carries out the plan. Creating a topic that appeared meanwhile is
// not an error, so two processes may apply at once.
func (p *Plan) Apply(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	var errs []error
	for _, c := range p.Changes {
		s := c.Spec
		switch c.Action {
		case Create:
			cfg := make(map[string]*string, len(s.Configs))
			for k, v := range s.Configs {
				cfg[k] = kadm.StringPtr(v)
			}
			if _, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, cfg, s.Name); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
			}
		case AddPartitions:
			rs, err := adm.UpdatePartitions(ctx, int(s.Partitions), s.Name)
			if err == nil {
				err = rs.Error()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("raise partitions of %s to %d: %w", s.Name, s.Partitions, err))
			}
		case AlterConfigs:
			var alters []kadm.AlterConfig
			for _, k := range slices.Sorted(maps.Keys(c.Configs)) {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(c.Configs[k].Want)})
			}
			rs, err := adm.AlterTopicConfigs(ctx, alters, s.Name)
			if err == nil {
				for _, r := range rs {
					if r.Err != nil {
						err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
					}
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("alter configs of %s: %w", s.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// PartitionIncreases describes each change that raises a partition count
// ("events 6 -> 12"): raising one moves keys between partitions.
func (p *Plan) PartitionIncreases() []string {
	var out []string
	for _, c := range p.Changes {
		if c.Action == AddPartitions {
			out = append(out, fmt.Sprintf("%s %d -> %d", c.Spec.Name, c.FromPartitions, c.Spec.Partitions))
		}
	}
	return out
}

// Print writes the plan for a person, one line per change, and says so
// when nothing differs.
func (p *Plan) Print(w io.Writer) {
	if len(p.Changes) == 0 {
		fmt.Fprintln(w, "nothing differs: the cluster matches the config")
		return
	}
	for _, c := range p.Changes {
		s := c.Spec
		switch c.Action {
		case Create:
			fmt.Fprintf(w, "+ create %s (%s): %d partitions, replication %s, %s\n", s.Name, s.Role, s.Partitions, rf(s.ReplicationFactor), configList(s.Configs))
		case AddPartitions:
			fmt.Fprintf(w, "~ %s: partitions %d -> %d\n", s.Name, c.FromPartitions, s.Partitions)
		case Keep:
			fmt.Fprintf(w, "! %s: has %d partitions, config says %d; partitions are never lowered (keys would move and per-resource order would break), keeping %d\n", s.Name, c.FromPartitions, s.Partitions, c.FromPartitions)
		case AlterConfigs:
			for _, k := range slices.Sorted(maps.Keys(c.Configs)) {
				d := c.Configs[k]
				cur := "unset"
				if d.Current != nil {
					cur = *d.Current
				}
				fmt.Fprintf(w, "~ %s: %s %s -> %s\n", s.Name, k, cur, d.Want)
			}
		}
	}
	if p.Empty() {
		fmt.Fprintln(w, "nothing else differs")
	}
}

func rf(n int16) string {
	if n < 0 {
		return "broker default"
	}
	return fmt.Sprint(n)
}

func configList(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

// Ensure makes the topics of c as topology apply does, for a process or
// test that brings its own cluster up: a plan, then its apply.
func Ensure(ctx context.Context, cl *kgo.Client, c Config) error {
	plan, err := MakePlan(ctx, cl, Specs(c))
	if err != nil {
		return err
	}
	return plan.Apply(ctx, cl)
}
