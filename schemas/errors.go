package schemas

import (
	"errors"
	"strings"
)

// Error classes name why an event was rejected. They travel in the DLQ
// header firehose.error.class so operators can group rejections.
const (
	ClassDecode   = "decode"   // the bytes are not an event at all
	ClassInvalid  = "invalid"  // an event that breaks the schema's rules
	ClassOversize = "oversize" // larger than the configured limit
)

// Problem is one thing wrong with one field of an event.
type Problem struct {
	Field string // JSON path of the field, e.g. "sequence" or "metadata"
	Msg   string
}

// Error is returned by decoders and Validate. Class says what kind of
// rejection it is; Problems lists every field that is wrong, not only the
// first, so a producer can fix an event in one round.
type Error struct {
	Class    string
	Problems []Problem
	Err      error // underlying cause for ClassDecode, if any
}

func (e *Error) Error() string { return e.Class + ": " + e.Detail() }

// Detail is the error's message without its class.
func (e *Error) Detail() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	if len(e.Problems) == 0 && e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Detail returns the message of a rejection error without its class, or
// err.Error() for other errors.
func Detail(err error) string {
	var se *Error
	if errors.As(err, &se) {
		return se.Detail()
	}
	return err.Error()
}

// ClassOf returns the class of a rejection error, or "" when err is not one.
func ClassOf(err error) string {
	var se *Error
	if errors.As(err, &se) {
		return se.Class
	}
	return ""
}

func decodeError(err error) *Error {
	return &Error{Class: ClassDecode, Problems: []Problem{{Msg: err.Error()}}, Err: err}
}
