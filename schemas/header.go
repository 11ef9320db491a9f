package schemas

import (
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
)

// DecodeHeader reads only an event's top-level scalar fields (event_id,
// timestamp, account_id, resource_id, sequence, event_type and the optional
// ones), for a reader of values the processor wrote after validating them:
// a connector of the events topic, which names files and keys from these
// fields and writes the value's bytes as they are. It checks that data is
// one valid JSON object whose fields have their types and whose required
// fields are there, but not what the processor checked beyond that
// (nesting depth, duplicate and case-variant keys); metadata, lead_data and
// unknown fields are not kept. The strings borrow data's memory.
//
// ok is false when data is not such an object, or holds the top-level key
// reject: the caller then decodes it with JSON.Decode, which says what is
// wrong, or keeps everything.
func DecodeHeader(data []byte, reject string) (e *Event, ok bool) {
	if !gjson.ValidBytes(data) {
		return nil, false
	}
	root := gjson.Parse(unsafe.String(unsafe.SliceData(data), len(data)))
	if !root.IsObject() {
		return nil, false
	}
	e = new(Event)
	ok = true
	haveSeq := false
	str := func(v gjson.Result, dst *string) {
		switch v.Type {
		case gjson.Null:
		case gjson.String:
			*dst = v.String()
		default:
			ok = false
		}
	}
	root.ForEach(func(key, v gjson.Result) bool {
		k := key.String()
		if p := e.stringPtr(k); p != nil {
			str(v, p)
			return ok
		}
		switch k {
		case "timestamp":
			t, err := time.Parse(time.RFC3339Nano, v.Str)
			if v.Type != gjson.String || err != nil {
				ok = false
			}
			e.Timestamp = t.UTC()
		case "sequence":
			n, err := integer(v)
			ok = ok && err == nil
			e.Sequence, haveSeq = n, true
		case "duration_ms":
			if v.Type != gjson.Null {
				n, err := integer(v)
				ok = ok && err == nil
				e.DurationMS = &n
			}
		case "metadata", "lead_data":
			ok = ok && (v.Type == gjson.Null || v.IsObject())
		case reject:
			ok = false
		}
		return ok
	})
	if !ok || !haveSeq || e.Validate() != nil {
		return nil, false
	}
	return e, true
}
