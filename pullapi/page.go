package pullapi

import (
	"strconv"

	"github.com/firehose/firehose/schemas"
)

// page renders the answer.
func (s *Server) page(account string, items []item, next []int64, top bool) []byte {
	size := 96
	for _, it := range items {
		size += len(it.data) + 128
	}
	b := make([]byte, 0, size)
	b = append(b, `{"items":[`...)
	count := 0
	for _, it := range items {
		if count > 0 {
			b = append(b, ',')
		}
		count++
		b = append(b, `{"data":`...)
		b = append(b, it.data...)
		b = append(b, `,"meta":{"event_type":`...)
		b = schemas.AppendString(b, it.eventType)
		b = append(b, `,"resource_id":`...)
		b = schemas.AppendString(b, it.resourceID)
		if it.hasSeq {
			b = append(b, `,"sequence":`...)
			b = strconv.AppendInt(b, it.sequence, 10)
		}
		b = append(b, `}}`...)
	}
	b = append(b, `],"meta":{"position":`...)
	b = schemas.AppendString(b, s.o.Signer.Encode(Position{Account: account, Offsets: next}))
	b = append(b, `,"top":`...)
	b = strconv.AppendBool(b, top)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, "}}\n"...)
	return b
}
