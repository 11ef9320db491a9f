package connectors

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/firehose/firehose/schemas"
)

// Template is a parsed path template such as
// events/year={{year}}/month={{month}}/flow={{flow_id}}/. Names are topic,
// partition, year, month, day, hour, minute, and any top-level string field
// of the event (event_type, account_id, flow_id, …).
type Template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit  string
	name string // empty for a literal
}

var timeNames = map[string]bool{"year": true, "month": true, "day": true, "hour": true, "minute": true}

// ParseTemplate parses s; an unknown name or an unclosed {{ is an error.
func ParseTemplate(s string) (*Template, error) {
	t := new(Template)
	probe := &schemas.Event{}
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.parts = append(t.parts, tmplPart{lit: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: s[:i]})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		name := strings.TrimSpace(s[i+2 : i+j])
		if _, field := probe.StringField(name); !field && !timeNames[name] && name != "topic" && name != "partition" {
			return nil, fmt.Errorf("unknown name {{%s}} (use topic, partition, year, month, day, hour, minute or an event field such as flow_id)", name)
		}
		t.parts = append(t.parts, tmplPart{name: name})
		s = s[i+j+2:]
	}
	return t, nil
}

// Render appends the template for one event to dst. ts is the time that
// year…minute come from (event or processing time, by config). Values are
// made safe for a path one to one (see appendSafe), so an event can neither
// escape its prefix nor share another value's directory.
func (t *Template) Render(dst []byte, topic string, partition int32, ts time.Time, e *schemas.Event) []byte {
	ts = ts.UTC()
	for _, p := range t.parts {
		switch p.name {
		case "":
			dst = append(dst, p.lit...)
		case "topic":
			dst = appendSafe(dst, topic)
		case "partition":
			dst = strconv.AppendInt(dst, int64(partition), 10)
		case "year":
			dst = strconv.AppendInt(dst, int64(ts.Year()), 10)
		case "month":
			dst = append2(dst, int(ts.Month()))
		case "day":
			dst = append2(dst, ts.Day())
		case "hour":
			dst = append2(dst, ts.Hour())
		case "minute":
			dst = append2(dst, ts.Minute())
		default:
			v, _ := e.StringField(p.name)
			dst = appendSafe(dst, v)
		}
	}
	return dst
}

func append2(dst []byte, n int) []byte {
	if n < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(n), 10)
}

// maxValueBytes bounds one rendered value, so that no event can make a
// path element longer than file systems allow (255 bytes).
const maxValueBytes = 100

// appendSafe appends v made safe for one path element, one to one, so two
// values never share a directory: letters, digits and "-_.=" stay, every
// other byte becomes %XX (so "acc/B" is acc%2FB and "acc B" acc%20B),
// "." and ".." are encoded whole, and the empty value becomes "%unknown".
// A value whose encoding passes maxValueBytes keeps its first bytes and
// ends in "~" and 16 hex digits of its SHA-256.
func appendSafe(dst []byte, v string) []byte {
	switch v {
	case "":
		return append(dst, "%unknown"...)
	case ".":
		return append(dst, "%2E"...)
	case "..":
		return append(dst, "%2E%2E"...)
	}
	start := len(dst)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '=' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
		}
		if len(dst)-start > maxValueBytes-20 && i < len(v)-1 {
			// Too long: keep this much, then the hash of the whole.
			sum := sha256.Sum256([]byte(v))
			dst = append(dst, '~')
			return hex.AppendEncode(dst, sum[:8])
		}
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// ObjectName is the last element of a batch's Key.
func ObjectName(topic string, partition int32, firstOffset int64, ext string) string {
	return fmt.Sprintf("%s+%d+%020d%s", topic, partition, firstOffset, ext)
}
