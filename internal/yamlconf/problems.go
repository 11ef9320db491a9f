package yamlconf

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// Problems collects the problems of a section, each a *FieldError with a
// path relative to the section; Err joins them.
type Problems struct{ errs []error }

// Add records a problem of the field at path.
func (p *Problems) Add(path, format string, args ...any) {
	p.errs = append(p.errs, Errorf(path, format, args...))
}

// Join records every problem of err (from another section's validation)
// under prefix.
func (p *Problems) Join(prefix string, err error) {
	if err != nil {
		p.errs = append(p.errs, Prefix(prefix, err))
	}
}

// OneOf records a problem when value is not one of allowed.
func (p *Problems) OneOf(path, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		p.Add(path, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

// Err returns every problem recorded, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Join joins a and b's paths the way Problems and FieldError print them.
func Join(path, key string) string { return join(path, key) }

// ByteSize is a size in bytes that YAML may give as 1048576, "1MiB" or "5MB".
type ByteSize int64

// UnmarshalYAML accepts an integer or a human size such as 5MB or 1MiB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a size such as 5MB or 1MiB", n.Line)}}
	}
	if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil && i >= 0 {
		*b = ByteSize(i)
		return nil
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > 1<<62 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a size such as 5MB or 1MiB, got %q", n.Line, n.Value)}}
	}
	*b = ByteSize(v)
	return nil
}

// RedactURL returns u as logs and errors may show it: its password and
// the values of its query replaced by xxxxx.
func RedactURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		c.RawQuery = q.Encode()
	}
	c.Fragment = ""
	return c.Redacted()
}

// Parse unmarshals a YAML document into its node tree; a syntax error
// comes back as a *FieldError with the file and line.
func Parse(name string, data []byte) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(name, err)
	}
	return &root, nil
}

func syntaxError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return Locate(name, nil, err)
	}
	fe := &FieldError{File: name, Msg: err.Error()}
	if m := regexp.MustCompile(`^yaml: line (\d+): (.*)$`).FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML syntax: " + m[2]
	}
	return fe
}

// Locate fills in file, line and column of every FieldError from the
// document, and sorts them by line.
func Locate(name string, root *yaml.Node, err error) error {
	fes := FieldErrors(err)
	for _, fe := range fes {
		fe.File = name
		if fe.Line == 0 && root != nil {
			n := nodeAt(root, fe.Path)
			if strings.HasPrefix(fe.Msg, "unknown field") {
				n = keyNodeAt(root, fe.Path) // point at the misspelt key itself
			}
			if n != nil {
				fe.Line, fe.Column = n.Line, n.Column
			}
		}
	}
	slices.SortStableFunc(fes, func(a, b *FieldError) int { return a.Line - b.Line })
	out := make([]error, len(fes))
	for i, fe := range fes {
		out[i] = fe
	}
	return errors.Join(out...)
}

// Fields returns the YAML keys of struct T's fields.
func Fields[T any]() []string {
	known, _ := structFields(reflect.TypeFor[T]())
	return keys(known)
}

// Closest returns the candidate nearest s when it is near enough to be a
// likely misspelling, or "".
func Closest(s string, candidates []string) string { return closest(s, candidates) }
