package ops

import (
	"fmt"
	"testing"
)

func TestParseOffsets(t *testing.T) {
	got, err := ParseOffsets("0:120, 3:4000")
	if err != nil || len(got) != 2 || got[0] != 120 || got[3] != 4000 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "0", "0:x", "-1:5", "0:-5", "0:1,0:2", "a:b"} {
		if _, err := ParseOffsets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseOffsets(f *testing.F) {
	f.Add("0:120,3:4000")
	f.Add("1:")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseOffsets(s)
		if err != nil {
			return
		}
		for p, o := range m {
			if p < 0 || o < 0 {
				t.Fatalf("%q gave %d:%d", s, p, o)
			}
			if _, err := ParseOffsets(fmt.Sprintf("%d:%d", p, o)); err != nil {
				t.Fatal(err)
			}
		}
	})
}
