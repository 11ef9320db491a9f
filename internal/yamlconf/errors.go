// Package yamlconf is the toolkit of Firehose's config files: strict YAML
// decoding with the closest known name for a misspelt key, ${VAR}
// expansion after parsing, sizes such as 5MB, and errors that name the
// file, line, column and field of each problem, all at once. Each package
// owns its section (type, defaults, validation) and uses this to report.
package yamlconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with one field of a config file. Validate
// methods fill Path and Msg; the loader adds File, Line and Column from the
// YAML document, so an operator can go straight to the line.
type FieldError struct {
	File   string
	Line   int
	Column int
	Path   string // e.g. connectors[0].batch.max_events
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteByte(':')
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errorf returns a *FieldError for the field at path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// FieldErrors flattens err (a single error or an errors.Join tree) into its
// *FieldError leaves. Other errors become FieldErrors without a path.
func FieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*FieldError
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return []*FieldError{{Msg: err.Error()}}
}

// Prefix puts prefix in front of the path of every FieldError in err, so a
// component can validate its own section with relative paths.
func Prefix(prefix string, err error) error {
	fes := FieldErrors(err)
	if len(fes) == 0 {
		return nil
	}
	out := make([]error, len(fes))
	for i, fe := range fes {
		c := *fe
		switch {
		case prefix == "":
		case c.Path == "":
			c.Path = prefix
		case strings.HasPrefix(c.Path, "["):
			c.Path = prefix + c.Path
		default:
			c.Path = prefix + "." + c.Path
		}
		out[i] = &c
	}
	return errors.Join(out...)
}
