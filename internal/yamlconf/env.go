package yamlconf

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LookupFunc reads one environment variable; os.LookupEnv in production.
type LookupFunc func(name string) (string, bool)

// ExpandNode replaces ${VAR} and ${VAR:-default} in every scalar of the
// document, after parsing, so a secret with YAML syntax in it cannot change
// the document's structure. $${ stands for a literal ${. A plain scalar
// whose text changed is re-typed from its new text, so port: ${PORT} is
// still an integer.
func ExpandNode(n *yaml.Node, path string, lookup LookupFunc, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			ExpandNode(c, p, lookup, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			ExpandNode(n.Content[i+1], join(path, n.Content[i].Value), lookup, errs)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		v, err := Expand(n.Value, lookup)
		if err != nil {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Column: n.Column, Msg: err.Error()})
			return
		}
		if v != n.Value {
			n.Value = v
			if n.Style == 0 && n.Tag == "!!str" {
				n.Tag = "" // resolve the type from the expanded text
			}
		}
	}
}

// Expand substitutes ${VAR} and ${VAR:-default} in s. An unset variable
// without a default is an error that names it.
func Expand(s string, lookup LookupFunc) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // $${ is a literal ${
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if name == "" || strings.ContainsAny(name, " \t${") {
			return "", fmt.Errorf("bad variable reference ${%s}", expr)
		}
		v, ok := lookup(name)
		switch {
		case ok && (v != "" || !hasDef):
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a default)", name, name)
		}
		s = s[i+end+1:]
	}
}
