package connectors

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// kafkaNames is a Router that takes names of letters and dots only.
type kafkaNames struct{}

func (kafkaNames) TargetTemplate() *Template { return nil }
func (kafkaNames) CheckTarget(name string) error {
	if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz.0123456789") != "" {
		return errors.New("letters, digits and dots only")
	}
	return nil
}

// A routing connector writes to at most MaxTargets targets; a name the
// destination refuses, or said it does not have, is refused for
// MissingTargetTTL and then asked again; a missing target frees its
// place; at most MaxMissingTargets are remembered.
func TestTargetsAreBounded(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	ts := &targets{router: kafkaNames{}, seen: map[string]bool{}}
	if err := ts.admit("Bad Name", now); err == nil || !strings.Contains(err.Error(), "letters, digits and dots only") {
		t.Fatalf("a refused name: %v", err)
	}
	for i := range MaxTargets {
		if err := ts.admit(fmt.Sprintf("t.%d", i), now); err != nil {
			t.Fatalf("target %d of %d: %v", i+1, MaxTargets, err)
		}
	}
	if err := ts.admit("t.0", now); err != nil {
		t.Fatalf("a target already written: %v", err)
	}
	err := ts.admit("t.extra", now)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("one more than the %d", MaxTargets)) {
		t.Fatalf("the %dth target: %v", MaxTargets+1, err)
	}

	ts.missed("t.7", now)
	if err := ts.admit("t.7", now.Add(MissingTargetTTL-time.Second)); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("a missing target within %v: %v", MissingTargetTTL, err)
	}
	if err := ts.admit("t.extra", now); err != nil {
		t.Fatalf("the place a missing target left: %v", err)
	}
	if err := ts.admit("t.7", now.Add(MissingTargetTTL)); err == nil || errors.Is(err, ErrNoTarget) {
		t.Fatalf("a missing target after %v, with every place taken: %v, want the limit", MissingTargetTTL, err)
	}
	ts.missed("t.8", now)
	if err := ts.admit("t.7", now.Add(MissingTargetTTL)); err != nil {
		t.Fatalf("a missing target after %v, asked again: %v", MissingTargetTTL, err)
	}

	for i := range 3 * MaxMissingTargets {
		ts.missed(fmt.Sprintf("gone.%d", i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(ts.missing); n > MaxMissingTargets {
		t.Fatalf("%d missing targets remembered, want at most %d", n, MaxMissingTargets)
	}
	if err := ts.admit(fmt.Sprintf("gone.%d", 3*MaxMissingTargets-1), now); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("the latest missing target: %v", err)
	}
}
