// Package kafkaclient turns the kafka section of the config into franz-go
// client options, so every component connects the same way.
package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/twmb/franz-go/pkg/kgo"
	awssasl "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/firehose/firehose/internal/awsconf"
)

// Options returns the connection options for cfg: seeds, client id, TLS,
// SASL and a slog logger. Callers add the options of their role.
func Options(cfg Config, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
	}
	if log != nil {
		opts = append(opts, kgo.WithLogger(slogLogger{log}))
	}
	if cfg.TLS.Enabled {
		tc, err := TLSConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.Dialer((&tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}).DialContext))
	}
	if cfg.Rack != "" {
		opts = append(opts, kgo.Rack(cfg.Rack))
	}
	s := cfg.SASL
	switch s.Mechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()))
	case "OAUTHBEARER":
		opts = append(opts, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			if s.TokenFile == "" {
				return oauth.Auth{Token: s.Token}, nil
			}
			// Read at every authentication: a refreshed file is a
			// refreshed token for the next connection.
			b, err := os.ReadFile(s.TokenFile)
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %w", err)
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		})))
	case "AWS_MSK_IAM":
		opts = append(opts, kgo.SASL(awssasl.ManagedStreamingIAM(mskIAM())))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported", s.Mechanism)
	}
	return opts, nil
}

// mskIAM returns the credentials of the AWS default chain at each
// authentication; the chain caches and refreshes them.
func mskIAM() func(context.Context) (awssasl.Auth, error) {
	var (
		once sync.Once
		cfg  aws.Config
		err  error
	)
	return func(ctx context.Context) (awssasl.Auth, error) {
		once.Do(func() { cfg, err = awsconf.Load(ctx, "", "", "") })
		if err != nil {
			return awssasl.Auth{}, fmt.Errorf("AWS_MSK_IAM: %w", err)
		}
		creds, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return awssasl.Auth{}, fmt.Errorf("AWS_MSK_IAM: retrieve AWS credentials: %w", err)
		}
		return awssasl.Auth{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, nil
	}
}

// TLSConfig builds a client TLS config from PEM files.
func TLSConfig(c TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in by config
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("kafka.tls.ca_file: no PEM certificates in " + c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// slogLogger adapts slog to kgo.Logger. kgo's info level is chatty about
// connections, so it logs at debug and keeps warnings and errors.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Level() kgo.LogLevel {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (s slogLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		s.l.Error(msg, kv...)
	case kgo.LogLevelWarn:
		s.l.Warn(msg, kv...)
	default:
		s.l.Debug(msg, kv...)
	}
}

// GroupOptions are the consumer group options of one member of a process:
// the session and rebalance timeouts, and, with kafka.instance_id set, the
// static member id <instance_id>-<member> (member is "processor" or the
// connector's name), unique per group and stable across restarts.
func GroupOptions(cfg Config, member string) []kgo.Opt {
	opts := []kgo.Opt{}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	if cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(cfg.RebalanceTimeout))
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID+"-"+member))
	}
	return opts
}
