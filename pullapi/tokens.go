package pullapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// DevTokenPrefix is what firehose dev accepts before any account id.
const DevTokenPrefix = "dev-"

// Tokens maps bearer tokens to accounts. Only SHA-256 hashes are kept, so a
// leaked config or memory dump gives no usable token. The set is replaced
// whole when the tokens file changes; readers never lock.
type Tokens struct {
	inline []APIToken
	file   string
	dev    bool
	log    *slog.Logger

	set atomic.Pointer[map[string]string] // hex sha256 → account
	// seen is the SHA-256 of the tokens file's content last read (good
	// or bad), so any edit is noticed, whatever its size and time stamp.
	seen [32]byte
	// missing counts checks that found the tokens file gone.
	missing int
	// pending is the SHA-256 of new content seen once: content is applied
	// when two checks in a row find it, so a file caught half written (a
	// truncating editor, a copy in progress) is never loaded.
	pending [32]byte
}

// NewTokens loads the inline tokens and the tokens file, if any. dev makes
// every dev-<account> token valid for its account; only firehose dev sets
// it.
func NewTokens(inline []APIToken, file string, dev bool, log *slog.Logger) (*Tokens, error) {
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
	var data []byte
	if t.file != "" {
		var err error
		if data, err = os.ReadFile(t.file); err != nil {
			return fmt.Errorf("read tokens file: %w", err)
		}
	}
	return t.load(data)
}

// load replaces the set with the inline tokens and those of data, the
// tokens file's content (nil: none).
func (t *Tokens) load(data []byte) error {
	all := append([]APIToken(nil), t.inline...)
	if data != nil {
		t.seen = sha256.Sum256(data)
		more, err := ParseTokens(t.file, data)
		if err != nil {
			return err
		}
		all = append(all, more...)
	}
	m := make(map[string]string, len(all))
	for _, tok := range all {
		m[strings.ToLower(tok.SHA256)] = tok.Account
	}
	t.set.Store(&m)
	return nil
}

// Watch reads the tokens file again whenever its content changes (and has
// stayed the same for two checks, so a half-written file is not loaded),
// until ctx ends. A file that fails to load keeps the previous tokens, and the
// error is logged with its line. A file gone for two checks in a row (not
// the moment of an editor's save) revokes its tokens; the inline ones stay.
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
		t.check()
	}
}

// check is one look at the tokens file.
func (t *Tokens) check() {
	data, err := os.ReadFile(t.file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if t.missing++; t.missing == 2 {
			_ = t.load(nil)
			t.seen = [32]byte{}
			t.log.Warn("pull API tokens file removed; its tokens are revoked", "file", t.file, "tokens", t.Len())
		}
		return
	case err != nil:
		t.log.Error("pull API tokens file unreadable; keeping the tokens loaded before", "file", t.file, "err", err)
		return
	}
	t.missing = 0
	sum := sha256.Sum256(data)
	if sum == t.seen {
		return
	}
	if sum != t.pending {
		t.pending = sum // wait for the next check to find the same content
		return
	}
	if err := t.load(data); err != nil {
		t.log.Error("pull API tokens file rejected; keeping the tokens loaded before", "err", err)
		return
	}
	t.log.Info("pull API tokens reloaded", "file", t.file, "tokens", t.Len())
}

// NewToken returns a fresh random token and the hex SHA-256 to configure.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails; see crypto/rand
	token = "fh_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}
