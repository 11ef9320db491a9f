package yamlconf

import (
	"strings"
	"testing"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func FuzzExpand(f *testing.F) {
	f.Add("${A}-${B:-x}-$${C}")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Expand(s, env(map[string]string{"A": "1"}))
		if err == nil && !strings.Contains(s, "${") && out != s {
			t.Fatalf("text without references changed: %q -> %q", s, out)
		}
	})
}
