package pullapi

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An edit that keeps the file's size and time stamp is still read (the
// content is hashed), and a tokens file that is gone revokes its tokens
// from the second check on, keeping the inline ones.
func TestTokensFileEditsAndRemovalAreSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	tokA, hashA := NewToken()
	tokB, hashB := NewToken()
	write := func(hash string, mtime time.Time) {
		if err := os.WriteFile(path, []byte("tokens:\n  - {account: acc_A, sha256: "+hash+"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	stamp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write(hashA, stamp)
	toks, err := NewTokens(nil, path, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := toks.Account(tokA); !ok {
		t.Fatal("token A not loaded")
	}
	write(hashB, stamp) // same size, same time stamp
	toks.check()
	if _, ok := toks.Account(tokA); !ok {
		t.Fatal("content seen once (maybe half written) was applied")
	}
	toks.check()
	if _, ok := toks.Account(tokB); !ok {
		t.Fatal("a same-size edit with the old time stamp was not read")
	}
	if _, ok := toks.Account(tokA); ok {
		t.Fatal("the replaced token still works")
	}
	// A check that catches the file truncated mid-write loads nothing.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	toks.check()
	write(hashB, stamp)
	toks.check()
	if _, ok := toks.Account(tokB); !ok {
		t.Fatal("a file caught half written revoked the tokens")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	toks.check()
	if _, ok := toks.Account(tokB); !ok {
		t.Fatal("one check without the file (a save in progress) revoked the tokens")
	}
	toks.check()
	if _, ok := toks.Account(tokB); ok {
		t.Fatal("the tokens of a removed file still work")
	}
}
