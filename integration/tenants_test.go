package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/firehosetest"
)

// Two accounts share a resource id: account A's lead and its profile's
// properties (a salary, a diagnosis) never reach account B, neither in B's
// pull API items nor in B's profile events, and B's own do.
func TestAccountsSharingAResourceIDStayApart(t *testing.T) {
	fh := firehosetest.Start(t, firehosetest.Options{
		Tokens: map[string]string{"acc_a": "token-of-account-a", "acc_b": "token-of-account-b"},
		Config: `
kafka:
  brokers: ["${BROKER}"]
processor:
  profiles:
    event_types: ["profile.*"]
    coalesce_interval: 200ms
    rest_interval: 200ms
connectors:
  - name: files
    type: file
    batch: {max_events: 1000, max_age: 200ms}
    encoding: ndjson
    compression: none
    file: {dir: "${OUT}"}
`})
	ev := func(account, resource, typ string, seq int, extra string) string {
		return fmt.Sprintf(`{"event_id":"%s-%s-%d","timestamp":"2026-01-01T00:00:0%dZ","account_id":%q,"resource_id":%q,"sequence":%d,"event_type":%q%s}`,
			account, resource, seq, seq, account, resource, seq, typ, extra)
	}
	fh.Produce(t,
		// A's high sequence first: it must not make dedupe drop B's.
		ev("acc_a", "shared", "lead.created", 9, `,"lead_data":{"note":"a-secret-note"}`),
		ev("acc_b", "shared", "lead.created", 1, `,"lead_data":{"note":"b-note"}`),
		ev("acc_a", "prof_shared", "profile.property_changed", 1, `,"properties":{"salary":90000,"diagnosis":"a-diagnosis"}`),
		ev("acc_b", "prof_shared", "profile.property_changed", 1, `,"properties":{"visits":3}`),
	)
	pull := func(token string) string {
		var all strings.Builder
		pos := "tail"
		for range 20 {
			p := fh.Pull(t, token, pos)
			for _, it := range p.Items {
				all.Write(it.Data)
				all.WriteByte('\n')
			}
			pos = p.Meta.Position
			if p.Meta.Top {
				break
			}
		}
		return all.String()
	}
	var a, b string
	deadline := time.Now().Add(time.Minute)
	for {
		a, b = pull("token-of-account-a"), pull("token-of-account-b")
		if strings.Count(b, `"event_type":"profile.updated"`) == 1 && strings.Contains(b, "b-note") &&
			strings.Count(a, `"event_type":"profile.updated"`) == 1 && strings.Contains(a, "a-secret-note") {
			break
		}
		if time.Now().After(deadline) {
			// What the processor did, to tell "not processed" from
			// "not served".
			if resp, err := http.Get(fh.HTTP + "/metrics"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "firehose_processor") {
						t.Log(l)
					}
				}
			}
			t.Fatalf("after a minute, A pulled:\n%s\nB pulled:\n%s", a, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, secret := range []string{"a-secret-note", "salary", "90000", "a-diagnosis", `"acc_a"`} {
		if strings.Contains(b, secret) {
			t.Errorf("account B's items hold %s:\n%s", secret, b)
		}
	}
	if !strings.Contains(b, `"visits":3`) {
		t.Errorf("account B's profile.updated lacks its own property:\n%s", b)
	}
	for _, other := range []string{"b-note", `"visits"`, `"acc_b"`} {
		if strings.Contains(a, other) {
			t.Errorf("account A's items hold %s:\n%s", other, a)
		}
	}
}
