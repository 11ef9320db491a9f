package schemas

import "time"

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
	e = new(Event)
	ok = true
	haveSeq := false
	r := scan(data, "", false, func(m member) {
		if !ok {
			return
		}
		k := m.key
		if known, good := e.setString(m); known {
			ok = good
			return
		}
		switch k {
		case "timestamp":
			t, err := time.Parse(time.RFC3339Nano, m.text())
			ok = m.kind == kindString && err == nil
			e.Timestamp = t.UTC()
		case "sequence":
			n, err := integer(m)
			ok = err == nil
			e.Sequence, haveSeq = n, true
		case "duration_ms":
			if m.kind != kindNull {
				n, err := integer(m)
				ok = err == nil
				e.DurationMS = &n
			}
		case "metadata", "lead_data":
			ok = m.kind == kindNull || m.kind == kindObject
		case reject:
			ok = false
		}
	})
	if !ok || !r.valid || r.root != kindObject || !haveSeq || e.Validate() != nil {
		return nil, false
	}
	return e, true
}
