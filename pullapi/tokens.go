package pullapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/firehose/firehose/internal/config"
)

// DevTokenPrefix is what firehose dev accepts before any account id.
const DevTokenPrefix = "dev-"

// Tokens maps bearer tokens to accounts. Only SHA-256 hashes are kept, so a
// leaked config or memory dump gives no usable token. The set is replaced
// whole when the tokens file changes; readers never lock.
type Tokens struct {
	inline []config.APIToken
	file   string
	dev    bool
	log    *slog.Logger

	set     atomic.Pointer[map[string]string] // hex sha256 → account
	modTime time.Time
	size    int64
}

// NewTokens loads the inline tokens and the tokens file, if any. dev makes
// every dev-<account> token valid for its account; only firehose dev sets
// it.
func NewTokens(inline []config.APIToken, file string, dev bool, log *slog.Logger) (*Tokens, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &Tokens{inline: inline, file: file, dev: dev, log: log}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Account returns the account a token grants, or false.
func (t *Tokens) Account(token string) (string, bool) {
	if token == "" {
		return "", false
	}
	if t.dev {
		if acc, ok := strings.CutPrefix(token, DevTokenPrefix); ok && acc != "" {
			return acc, true
		}
	}
	sum := sha256.Sum256([]byte(token))
	acc, ok := (*t.set.Load())[hex.EncodeToString(sum[:])]
	return acc, ok
}

// Len is the number of configured (hashed) tokens.
func (t *Tokens) Len() int { return len(*t.set.Load()) }

func (t *Tokens) reload() error {
	all := append([]config.APIToken(nil), t.inline...)
	if t.file != "" {
		st, err := os.Stat(t.file)
		if err != nil {
			return err
		}
		more, err := config.LoadTokens(t.file)
		if err != nil {
			return err
		}
		all = append(all, more...)
		t.modTime, t.size = st.ModTime(), st.Size()
	}
	m := make(map[string]string, len(all))
	for _, tok := range all {
		m[strings.ToLower(tok.SHA256)] = tok.Account
	}
	t.set.Store(&m)
	return nil
}

// Watch reads the tokens file again whenever it changes, until ctx ends. A
// file that fails to load keeps the previous tokens, and the error is
// logged with its line.
func (t *Tokens) Watch(ctx context.Context, every time.Duration) {
	if t.file == "" {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := os.Stat(t.file)
		if err != nil {
			t.log.Error("pull API tokens file unreadable; keeping the tokens loaded before", "file", t.file, "err", err)
			continue
		}
		if st.ModTime().Equal(t.modTime) && st.Size() == t.size {
			continue
		}
		if err := t.reload(); err != nil {
			t.modTime, t.size = st.ModTime(), st.Size() // report a bad file once, not every tick
			t.log.Error("pull API tokens file rejected; keeping the tokens loaded before", "err", err)
			continue
		}
		t.log.Info("pull API tokens reloaded", "file", t.file, "tokens", t.Len())
	}
}

// NewToken returns a fresh random token and the hex SHA-256 to configure.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails; see crypto/rand
	token = "fh_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}
