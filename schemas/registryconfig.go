package schemas

import (
	"net/url"
	"time"

	"github.com/firehose/firehose/internal/kafkaclient"
	"github.com/firehose/firehose/internal/yamlconf"
)

// RegistryConfig is the schema_registry section: a Confluent-compatible Schema Registry (Confluent's,
// Redpanda's, Karapace, Apicurio's ccompat API).
type RegistryConfig struct {
	// URL is the registry, e.g. https://registry:8081. Credentials go in
	// Username and Password or Token, never in the URL, which is logged.
	URL string `yaml:"url"`
	// Username and Password are basic auth (Confluent Cloud: the API key
	// and secret); put the password in the environment.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Token is a bearer token, instead of Username and Password.
	Token string `yaml:"token"`
	// TLS adds a CA or a client certificate for an https URL.
	TLS kafkaclient.TLS `yaml:"tls"`
	// Register registers the event schema under the subjects Firehose
	// writes (default true); false only looks it up, and start fails if
	// an administrator has not registered it.
	Register *bool `yaml:"register"`
	// Timeout bounds one registry request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// IsRegister reports whether Firehose registers its schemas.
func (s RegistryConfig) IsRegister() bool { return s.Register == nil || *s.Register }

// Defaults fills the fields left empty.
func (s *RegistryConfig) Defaults() {
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Second
	}
}

// Validate reports every problem of the section, with paths relative to
// it; an empty URL (no registry) has none.
func (s RegistryConfig) Validate() error {
	if s.URL == "" {
		return nil
	}
	var v yamlconf.Problems
	u, err := url.Parse(s.URL)
	switch {
	case err != nil:
		v.Add("url", "is not a URL")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		// Not echoed: without a scheme, a secret may be anywhere in it.
		v.Add("url", "must be an http:// or https:// URL with a host (the value is not shown: it may hold a secret)")
	case u.User != nil:
		v.Add("url", "must not hold credentials (%s): the URL is logged; use schema_registry.username and password, or token", yamlconf.RedactURL(u))
	case u.RawQuery != "":
		v.Add("url", "must not hold a query (%s): the URL is logged; use schema_registry.username and password, or token", yamlconf.RedactURL(u))
	}
	if (s.Username == "") != (s.Password == "") {
		v.Add("password", "username and password go together")
	}
	if s.Token != "" && s.Username != "" {
		v.Add("token", "use either a token or a username and password, not both")
	}
	if s.Timeout < 0 {
		v.Add("timeout", "must be positive, got %s", s.Timeout)
	}
	v.Join("tls", s.TLS.Validate())
	return v.Err()
}
