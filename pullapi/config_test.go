package pullapi

import (
	"strings"
	"testing"
)

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("tokens:\n  - account: acc_1\n    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"))
	f.Add([]byte("tokens: []\n"))
	f.Add([]byte("tokens: {account: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return // a tokens file is small; huge YAML only measures the YAML library
		}
		toks, err := ParseTokens("tokens.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tokens.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, tok := range toks {
			if tok.Account == "" || len(tok.SHA256) != 64 {
				t.Fatalf("accepted %+v", tok)
			}
		}
	})
}
