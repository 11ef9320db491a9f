package tracing

import (
	"net/url"

	"github.com/firehose/firehose/internal/yamlconf"
)

// Config is the tracing section: Firehose exports OpenTelemetry spans of processing and delivery, each a
// child of the producer's trace context (a traceparent header on the raw
// record). Off (the default) when Endpoint is empty: then no span is made.
type Config struct {
	// Endpoint is an OTLP/HTTP collector, e.g. http://otel-collector:4318.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of traces sampled that no producer decided
	// for (default 1); a producer's sampled flag is always followed.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName names the process in traces; default firehose.
	ServiceName string `yaml:"service_name"`
}

// Defaults fills the fields left empty.
func (c *Config) Defaults() {
	if c.ServiceName == "" {
		c.ServiceName = "firehose"
	}
	if c.SampleRatio == nil {
		one := 1.0
		c.SampleRatio = &one
	}
}

// Validate reports every problem of the section, with paths relative to it.
func (c Config) Validate() error {
	var v yamlconf.Problems
	if e := c.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.Add("endpoint", "must be an OTLP/HTTP URL such as http://otel-collector:4318, got %q", e)
		}
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.Add("sample_ratio", "must be from 0 to 1, got %v", *r)
	}
	return v.Err()
}
