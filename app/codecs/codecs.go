// Package codecs builds the codecs of the raw and events topics from
// config, with a Schema Registry client when an encoding needs one.
package codecs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/internal/buildinfo"
	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/topology"
)

// Client returns a client of the configured registry.
func Client(c schemas.RegistryConfig) (*sr.Client, error) {
	opts := []sr.ClientOpt{
		sr.URLs(c.URL),
		sr.HTTPClient(&http.Client{Timeout: c.Timeout}),
		sr.UserAgent("firehose/" + buildinfo.Read().Version),
	}
	if c.TLS.Enabled || c.TLS.CAFile != "" || c.TLS.CertFile != "" {
		tc, err := kafkaclient.TLSConfig(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("schema_registry.tls: %w", err)
		}
		opts = append(opts, sr.DialTLSConfig(tc))
	}
	switch {
	case c.Token != "":
		opts = append(opts, sr.BearerToken(c.Token))
	case c.Username != "":
		opts = append(opts, sr.BasicAuth(c.Username, c.Password))
	}
	return sr.NewClient(opts...)
}

// Codecs are the codecs of the raw and events topics. A writer is nil
// unless asked for.
type Codecs struct {
	RawReader, RawWriter       schemas.Codec
	EventsReader, EventsWriter schemas.Codec
}

// Which topics a process writes: their writers register (or look up)
// the event schema under the topic's subject at start.
const (
	WriteRaw    = "raw"
	WriteEvents = "events"
)

// Open returns the codecs for cfg. Readers record-borrow (see
// schemas.JSON). With a confluent encoding it reaches the registry for
// each writer, and fails if it cannot: a process that cannot write its
// schema must not start.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, writes ...string) (*Codecs, error) {
	var reg *schemas.Registry
	registry := func() (*schemas.Registry, error) {
		if reg == nil {
			cl, err := Client(cfg.SchemaRegistry)
			if err != nil {
				return nil, err
			}
			reg = schemas.NewRegistry(cl, log)
		}
		return reg, nil
	}
	open := func(key string, t topology.Topic, write bool) (reader, writer schemas.Codec, err error) {
		defer func() {
			if err != nil {
				err = fmt.Errorf("topology.%s.encoding: %w", key, err)
			}
		}()
		if !schemas.IsConfluent(t.Encoding) {
			if reader, err = schemas.RecordCodecFor(t.Encoding); err != nil {
				return nil, nil, err
			}
			if write {
				writer, err = schemas.CodecFor(t.Encoding)
			}
			return reader, writer, err
		}
		r, err := registry()
		if err != nil {
			return nil, nil, err
		}
		if reader, err = r.Codec(ctx, t.Encoding, "", false, true); err != nil {
			return nil, nil, err
		}
		if write {
			writer, err = r.Codec(ctx, t.Encoding, t.Subject, cfg.SchemaRegistry.IsRegister(), false)
		}
		return reader, writer, err
	}
	var c Codecs
	var err error
	if c.RawReader, c.RawWriter, err = open("raw", cfg.Topology.Raw, slices.Contains(writes, WriteRaw)); err != nil {
		return nil, err
	}
	if c.EventsReader, c.EventsWriter, err = open("events", cfg.Topology.Events, slices.Contains(writes, WriteEvents)); err != nil {
		return nil, err
	}
	return &c, nil
}
