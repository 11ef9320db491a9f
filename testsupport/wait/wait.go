// Package wait is the one way tests wait on a condition: Eventually polls
// until it holds, Consistently checks that it keeps holding. Tests wait on
// conditions, never on fixed sleeps, and a failure says what was awaited
// and for how long. It imports nothing of Firehose, so every test package
// can use it.
package wait

import (
	"testing"
	"time"
)

// Every is how often a condition is checked.
const Every = 20 * time.Millisecond

// Eventually checks cond every Every until it holds, and fails the test,
// naming what, if it has not within d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(Every)
	}
}

// Consistently checks cond every Every for d, and fails the test, naming
// what, as soon as it does not hold.
func Consistently(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(Every) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
	}
}
