package kafkaclient

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/firehose/firehose/testsupport/embedded"
)

// produceOne connects with the options of cfg, creates a topic and
// produces one record to it; it returns the first error.
func produceOne(t *testing.T, cfg Config) error {
	t.Helper()
	opts, err := Options(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("t"), kgo.RequestRetries(0), kgo.RetryTimeout(5*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t"); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
}

// PLAIN and both SCRAMs authenticate against a broker that requires them,
// and a wrong password is refused.
func TestPlainAndScram(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			b, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, "firehose", "s3cret")}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: mech, Username: "firehose", Password: "s3cret"}}); err != nil {
				t.Fatalf("right password: %v", err)
			}
			if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: mech, Username: "firehose", Password: "wrong"}}); err == nil {
				t.Fatal("a wrong password was accepted")
			}
		})
	}
}

// saslBroker answers the SASL exchange of one mechanism through control
// hooks (kfake itself knows PLAIN and SCRAM only) and hands each
// authentication's bytes to check, which accepts them or not.
func saslBroker(t *testing.T, mech string, check func(auth []byte) (resp []byte, ok bool)) *embedded.Broker {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.ControlKey(int16(kmsg.SASLHandshake), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		resp := kreq.ResponseKind().(*kmsg.SASLHandshakeResponse)
		resp.SupportedMechanisms = []string{mech}
		if kreq.(*kmsg.SASLHandshakeRequest).Mechanism != mech {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		}
		return resp, nil, true
	})
	b.ControlKey(int16(kmsg.SASLAuthenticate), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		resp := kreq.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		out, ok := check(kreq.(*kmsg.SASLAuthenticateRequest).SASLAuthBytes)
		if !ok {
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "authentication failed"
			resp.ErrorMessage = &msg
		}
		resp.SASLAuthBytes = out
		return resp, nil, true
	})
	return b
}

// OAUTHBEARER sends the configured token, and a token file is read again at
// every authentication, so a refreshed file is used by the next connection.
func TestOAuthBearerTokenAndTokenFile(t *testing.T) {
	var mu sync.Mutex
	valid := map[string]bool{"static-token": true, "file-token-1": true, "file-token-2": true}
	var seen []string
	b := saslBroker(t, "OAUTHBEARER", func(auth []byte) ([]byte, bool) {
		// RFC 7628: n,a=<authzid>,^Aauth=Bearer <token>^A^A
		m := regexp.MustCompile("\x01auth=Bearer ([^\x01]*)\x01").FindSubmatch(auth)
		mu.Lock()
		defer mu.Unlock()
		if m == nil {
			return nil, false
		}
		seen = append(seen, string(m[1]))
		return nil, valid[string(m[1])]
	})
	if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: "OAUTHBEARER", Token: "static-token"}}); err != nil {
		t.Fatalf("static token: %v", err)
	}
	file := filepath.Join(t.TempDir(), "token")
	for _, tok := range []string{"file-token-1", "file-token-2"} {
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: "OAUTHBEARER", TokenFile: file}}); err != nil {
			t.Fatalf("%s: %v", tok, err)
		}
	}
	if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: "OAUTHBEARER", Token: "expired"}}); err == nil {
		t.Fatal("an invalid token was accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, tok := range []string{"static-token", "file-token-1", "file-token-2", "expired"} {
		if !strings.Contains(strings.Join(seen, " "), tok) {
			t.Errorf("the broker never saw %q (saw %v)", tok, seen)
		}
	}
}

// AWS_MSK_IAM sends a SigV4-signed kafka-cluster:Connect payload with the
// credentials of the AWS default chain (here the environment). The broker
// checks its form and the access key; verifying the signature itself is
// what MSK does and is not tested here.
func TestMSKIAMSendsASignedPayloadFromTheDefaultChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAFIREHOSETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "firehose-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	var payload map[string]string
	b := saslBroker(t, "AWS_MSK_IAM", func(auth []byte) ([]byte, bool) {
		if err := json.Unmarshal(auth, &payload); err != nil {
			return nil, false
		}
		return []byte(`{"version":"2020_10_22","request-id":"firehose-test"}`), true
	})
	if err := produceOne(t, Config{Brokers: []string{b.Addr}, SASL: SASL{Mechanism: "AWS_MSK_IAM"}}); err != nil {
		t.Fatal(err)
	}
	if payload["action"] != "kafka-cluster:Connect" || payload["x-amz-algorithm"] != "AWS4-HMAC-SHA256" ||
		!strings.HasPrefix(payload["x-amz-credential"], "AKIAFIREHOSETEST/") || !strings.Contains(payload["x-amz-credential"], "/eu-west-1/kafka-cluster/aws4_request") ||
		!regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(payload["x-amz-signature"]) {
		t.Fatalf("payload %v", payload)
	}
}
