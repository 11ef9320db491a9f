package codecs_test

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/firehose/firehose/app/codecs"
	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/schemas"
)

// tlsRegistry serves the fake registry over TLS with basic auth, and
// returns its URL and the PEM file of its certificate.
func tlsRegistry(t *testing.T) (*srfake.Registry, string, string) {
	fake := srfake.NewRegistry(srfake.WithAuth("Basic dTpw")) // u:p
	srv := httptest.NewTLSServer(fake.Handler())
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return fake, srv.URL, ca
}

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("f.yaml", []byte(doc), config.Options{Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The processor's start against a registry behind TLS and basic auth:
// the events subject is registered, and values carry its id. Without
// the CA, or with register: false and nothing registered, start fails
// and says why.
func TestOpenRegistersOverTLSWithAuth(t *testing.T) {
	fake, url, ca := tlsRegistry(t)
	doc := "kafka: {brokers: [k:9092]}\nschema_registry: {url: \"" + url + "\", username: u, password: p, tls: {ca_file: " + ca + "}%s}\ntopology:\n  events: {encoding: json-confluent}\n"

	_, err := codecs.Open(t.Context(), parse(t, strings.Replace(doc, "%s", ", register: false", 1)), nil, codecs.WriteEvents)
	if err == nil || !strings.Contains(err.Error(), `look up the event schema under subject "events-value"`) {
		t.Fatalf("lookup of an unregistered schema: %v", err)
	}

	c, err := codecs.Open(t.Context(), parse(t, strings.Replace(doc, "%s", "", 1)), nil, codecs.WriteEvents)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := fake.GetSchema("events-value", 1)
	if !ok || got.Type != sr.TypeJSON || got.ID != c.EventsWriter.(*schemas.Confluent).ID() {
		t.Fatalf("registered %+v (%v)", got, ok)
	}
	if c.RawWriter != nil || c.RawReader == nil {
		t.Fatalf("raw codecs %v %v: only events was asked to write", c.RawWriter, c.RawReader)
	}

	noCA := strings.Replace(strings.Replace(doc, "%s", "", 1), ", tls: {ca_file: "+ca+"}", "", 1)
	if _, err := codecs.Open(t.Context(), parse(t, noCA), nil, codecs.WriteEvents); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", err)
	}
	wrong := strings.Replace(strings.Replace(doc, "%s", "", 1), "password: p", "password: q", 1)
	if _, err := codecs.Open(t.Context(), parse(t, wrong), nil, codecs.WriteEvents); err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("with a wrong password: %v", err)
	}
}
