package chunks

import (
	"bytes"
	"testing"
)

// Copies keep their bytes when the source changes and when more are made
// after them, nil stays nil, and a copy larger than MaxRoom is whole too.
func TestCopiesAreTheirOwn(t *testing.T) {
	var a Bytes
	if a.Copy(nil) != nil {
		t.Fatal("a copy of nil is not nil")
	}
	if c := a.Copy([]byte{}); c == nil || len(c) != 0 {
		t.Fatalf("a copy of an empty slice is %v", c)
	}
	src := []byte("value")
	var copies [][]byte
	var wants [][]byte
	for i := range 3 * Size / 100 {
		b := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%200)
		if i%500 == 0 {
			b = bytes.Repeat([]byte{'L'}, MaxRoom+1)
		}
		copies = append(copies, a.Copy(b))
		wants = append(wants, bytes.Clone(b))
		b[0] = '!' // the source changes
		_ = append(copies[len(copies)-1], "garbage"...)
	}
	c := a.Copy(src)
	src[0] = 'V'
	if string(c) != "value" {
		t.Fatalf("copy changed with its source: %s", c)
	}
	for i := range copies {
		if !bytes.Equal(copies[i], wants[i]) {
			t.Fatalf("copy %d is %.40q, want %.40q", i, copies[i], wants[i])
		}
	}
}
