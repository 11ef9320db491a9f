// Package pullapi is the HTTP Firehose API: a client GETs a page of its
// account's events since a position and receives a new position and a top
// flag. This file is the position: an opaque, versioned, signed token.
package pullapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors of Signer.Decode. Each maps to an HTTP status in the API.
var (
	ErrMalformedPosition = errors.New("malformed position")                  // 400
	ErrForgedPosition    = errors.New("position fails its integrity check")  // 400
	ErrOtherAccount      = errors.New("position belongs to another account") // 403
)

const (
	positionVersion = 1
	macSize         = 16 // truncated HMAC-SHA-256; 128 bits
	maxPartitions   = 10000
)

// Position is where a client is in its account's stream: the next offset
// to read in each partition of the events topic.
type Position struct {
	Account string
	Offsets []int64 // by partition
}

// Signer signs and checks positions with a server key. Every API replica
// with the same key accepts every other's positions, and a restart keeps
// them valid.
type Signer struct{ key []byte }

// NewSigner returns a signer; the key must be at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("position key is %d bytes; it must be at least 32", len(key))
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// Encode returns the token for p.
func (s *Signer) Encode(p Position) string {
	b := make([]byte, 0, 8+len(p.Account)+len(p.Offsets)*4+macSize)
	b = append(b, positionVersion)
	b = binary.AppendUvarint(b, uint64(len(p.Account)))
	b = append(b, p.Account...)
	b = binary.AppendUvarint(b, uint64(len(p.Offsets)))
	for _, o := range p.Offsets {
		b = binary.AppendUvarint(b, uint64(max(o, 0)))
	}
	b = append(b, s.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Signer) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("firehose-position"))
	h.Write(payload)
	return h.Sum(nil)[:macSize]
}

// Decode checks a token and returns its position. account is the
// requester's: a valid token of another account is refused, so a position
// can never be edited or handed over into another account's stream.
func (s *Signer) Decode(token, account string) (Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 1+macSize {
		return Position{}, ErrMalformedPosition
	}
	payload, sum := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(sum, s.mac(payload)) {
		return Position{}, ErrForgedPosition
	}
	// Signed by us: what follows is well formed unless the format changed.
	if payload[0] != positionVersion {
		return Position{}, fmt.Errorf("%w: version %d", ErrMalformedPosition, payload[0])
	}
	rest := payload[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return Position{}, ErrMalformedPosition
	}
	p := Position{Account: string(rest[k : k+int(n)])}
	rest = rest[k+int(n):]
	parts, k := binary.Uvarint(rest)
	if k <= 0 || parts > maxPartitions {
		return Position{}, ErrMalformedPosition
	}
	rest = rest[k:]
	p.Offsets = make([]int64, 0, parts)
	for range parts {
		o, k := binary.Uvarint(rest)
		if k <= 0 || o > 1<<62 {
			return Position{}, ErrMalformedPosition
		}
		p.Offsets = append(p.Offsets, int64(o))
		rest = rest[k:]
	}
	if len(rest) != 0 {
		return Position{}, ErrMalformedPosition
	}
	if p.Account != account {
		return Position{}, ErrOtherAccount
	}
	return p, nil
}
