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

func TestParseRanges(t *testing.T) {
	got, err := ParseRanges("0:120, 3:4000-4500")
	if err != nil || len(got) != 2 || got[0] != [2]int64{120, -1} || got[3] != [2]int64{4000, 4500} {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "0", "0:x", "-1:5", "0:-5", "0:1,0:2", "0:5-4", "0:5-", "0:5-x"} {
		if _, err := ParseRanges(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseRanges(f *testing.F) {
	f.Add("0:120,3:4000-4500")
	f.Add("1:5-")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseRanges(s)
		if err != nil {
			return
		}
		for p, r := range m {
			if p < 0 || r[0] < 0 || r[1] != -1 && r[1] < r[0] {
				t.Fatalf("%q gave %d:%v", s, p, r)
			}
			back := fmt.Sprintf("%d:%d", p, r[0])
			if r[1] >= 0 {
				back += fmt.Sprintf("-%d", r[1])
			}
			if again, err := ParseRanges(back); err != nil || again[p] != r {
				t.Fatalf("%q: %v %v", back, again, err)
			}
		}
	})
}
