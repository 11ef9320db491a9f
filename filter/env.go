package filter

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/tidwall/gjson"

	"github.com/firehose/firehose/schemas"
)

// needs is what the expressions of a filter (or one Expr) read of an
// event beyond its top-level scalars. Most read a few constant paths
// (metadata.buyer_response.price); for them env decodes those paths only,
// instead of turning all of metadata into Go maps for every event.
type needs struct {
	timestamp                 bool
	metadata, leadData, extra access
	// slots are the constant paths the fast programs read, in the order
	// of their slots.
	slots []slot
}

// program is an expression compiled for the slow environment, which
// decodes into Go maps what it reads of metadata, lead_data and extra,
// and, when its paths allow, for the fast one (slotEnv), which gives each
// constant path its value straight from the event's JSON.
type program struct {
	src        string
	slow, fast *vm.Program
}

// access is how expressions read one of metadata, lead_data or extra.
type access struct {
	used  bool
	whole bool       // used other than as the root of constant paths
	paths [][]string // the constant paths below the root, none a prefix of another
}

// read notes what the program rooted at n reads.
func (nd *needs) read(n ast.Node) {
	chain := map[ast.Node][]string{} // member nodes that are a constant path from a root
	inner := map[ast.Node]bool{}     // chain nodes that another chain node extends
	roots := map[string]int{}        // how often each identifier roots a chain
	ids := map[string]int{}
	ast.Walk(&n, visitor(func(node ast.Node) {
		switch x := node.(type) {
		case *ast.IdentifierNode:
			ids[x.Value]++
		case *ast.MemberNode:
			p, ok := x.Property.(*ast.StringNode)
			if !ok || x.Method {
				return
			}
			switch b := x.Node.(type) {
			case *ast.IdentifierNode:
				chain[x] = []string{b.Value, p.Value}
				roots[b.Value]++
			case *ast.MemberNode:
				if c, ok := chain[b]; ok {
					chain[x] = append(slices.Clip(c), p.Value)
					inner[b] = true
				}
			}
		}
	}))
	if ids["$env"] > 0 { // the whole environment, by any name
		nd.timestamp = true
		for _, a := range []*access{&nd.metadata, &nd.leadData, &nd.extra} {
			a.used, a.whole = true, true
		}
		return
	}
	if ids["timestamp"] > 0 {
		nd.timestamp = true
	}
	for name, a := range map[string]*access{"metadata": &nd.metadata, "lead_data": &nd.leadData, "extra": &nd.extra} {
		if ids[name] == 0 {
			continue
		}
		a.used = true
		if ids[name] != roots[name] {
			a.whole = true
		}
		for x, c := range chain {
			if c[0] == name && !inner[x] {
				a.paths = append(a.paths, c[1:])
			}
		}
		a.prune()
	}
}

// prune keeps paths sorted, once each, and drops those below another: the
// shorter one's value holds them.
func (a *access) prune() {
	if a.whole {
		a.paths = nil
		return
	}
	slices.SortFunc(a.paths, func(x, y []string) int {
		if c := len(x) - len(y); c != 0 {
			return c
		}
		return slices.Compare(x, y)
	})
	var kept [][]string
	for _, p := range a.paths {
		if !slices.ContainsFunc(kept, func(k []string) bool { return len(k) <= len(p) && slices.Equal(k, p[:len(k)]) }) {
			kept = append(kept, p)
		}
	}
	a.paths = kept
}

type visitor func(ast.Node)

func (v visitor) Visit(n *ast.Node) { v(*n) }

// object returns what an expression sees of the JSON object src: all of
// it as Go values, or only the paths a reads (each prefix of a path an
// object holding just what the paths below it need, or the value itself
// when it is not an object, as the whole would have it). The decoder
// validated src, so gjson's conversion is safe.
func (a *access) object(src []byte) map[string]any {
	if !a.used || src == nil {
		return nil
	}
	if a.whole {
		m, _ := gjson.ParseBytes(src).Value().(map[string]any)
		return m
	}
	if !isObject(src) {
		return nil
	}
	m := make(map[string]any, len(a.paths))
	for _, p := range a.paths {
		put(m, src, p)
	}
	return m
}

// put sets in m the part of object obj that path p needs.
func put(m map[string]any, obj []byte, p []string) {
	v, ok := child(obj, p[0])
	if !ok {
		return
	}
	if len(p) == 1 || !isObject(v) {
		m[p[0]] = value(v)
		return
	}
	sub, ok := m[p[0]].(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[p[0]] = sub
	}
	put(sub, v, p[1:])
}

// child is the value of obj's member name; the last one, as a map would
// have it, when a producer repeated the name.
func child(obj []byte, name string) (v []byte, found bool) {
	for m := range schemas.Members(obj) {
		if m.Key == name {
			v, found = m.Value, true
		}
	}
	return v, found
}

// value is JSON value v as Go sees it in an expression (gjson's Value):
// scalars read here directly, objects and arrays by gjson.
func value(v []byte) any {
	switch v[0] {
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	case '"':
		return strings.Clone(schemas.StringValue(v)) // not the event's memory: a result may outlive it
	case '{', '[':
		return gjson.ParseBytes(v).Value()
	}
	f, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(v), len(v)), 64)
	return f
}

func isObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

// fields returns what an expression sees of the unknown top-level fields.
func (a *access) fields(fs schemas.Fields) map[string]any {
	if !a.used || len(fs) == 0 {
		return nil
	}
	m := make(map[string]any, len(fs))
	if a.whole {
		for _, f := range fs {
			m[f.Name] = gjson.ParseBytes(f.JSON).Value()
		}
		return m
	}
	for _, p := range a.paths {
		for _, f := range fs {
			if f.Name != p[0] {
				continue
			}
			if len(p) == 1 || !isObject(f.JSON) {
				m[f.Name] = value(f.JSON)
				break
			}
			sub, ok := m[f.Name].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[f.Name] = sub
			}
			put(sub, f.JSON, p[1:])
			break
		}
	}
	return m
}

// slotEnv is what a fast program sees: Env, and the value of each
// constant path below metadata, lead_data or extra that it reads, by its
// slot. A path such as metadata.buyer_response.price becomes
// ("firehose slots")[0], a name no expression can spell.
type slotEnv struct {
	Env
	Slots *[]any `expr:"firehose slots"`
}

const slotsName = "firehose slots"

// slot is one constant path a fast program reads.
type slot struct {
	root  string   // metadata, lead_data or extra
	names []string // the members below it
}

// compileFast compiles src once more, each constant path from metadata,
// lead_data or extra read through a new slot of nd. It returns nil, and
// takes no slot, when one of them is read whole: those programs keep the
// maps. (No variable can take a root's name: expr refuses to redeclare.)
func (nd *needs) compileFast(src string, opts ...expr.Option) *vm.Program {
	if nd.metadata.whole || nd.leadData.whole || nd.extra.whole {
		return nil
	}
	had := len(nd.slots)
	p := &slotter{nd: nd, made: map[*ast.MemberNode]int{}}
	prog, err := expr.Compile(src, append([]expr.Option{expr.Env(slotEnv{}), expr.Patch(p)}, opts...)...)
	if err != nil {
		nd.slots = nd.slots[:had]
		return nil
	}
	return prog
}

// slotter is the patch that turns constant paths into slots. expr walks
// children before their parent, so a path's first member becomes a slot
// and each member that extends it lengthens that slot's path.
type slotter struct {
	nd   *needs
	made map[*ast.MemberNode]int // the nodes it made, by slot
}

func (p *slotter) Visit(node *ast.Node) {
	x, ok := (*node).(*ast.MemberNode)
	if !ok || x.Method {
		return
	}
	name, ok := x.Property.(*ast.StringNode)
	if !ok {
		return
	}
	i := -1
	switch b := x.Node.(type) {
	case *ast.IdentifierNode:
		if b.Value == "metadata" || b.Value == "lead_data" || b.Value == "extra" {
			i = len(p.nd.slots)
			p.nd.slots = append(p.nd.slots, slot{root: b.Value})
		}
	case *ast.MemberNode:
		if j, ok := p.made[b]; ok {
			i = j
			delete(p.made, b)
		}
	}
	if i < 0 {
		return
	}
	s := &p.nd.slots[i]
	s.names = append(s.names, name.Value)
	n := &ast.MemberNode{Node: &ast.IdentifierNode{Value: slotsName}, Property: &ast.IntegerNode{Value: i}}
	ast.Patch(node, n)
	p.made[n] = i
}

// resolve is the slot's value in e, as the slow environment would give
// it; false when the path goes through a member that is missing or not
// an object, where expr fails (or, on an optional chain, gives nil): the
// slow program says which.
func (s *slot) resolve(e *schemas.Event) (any, bool) {
	var v []byte
	var found bool
	for i, name := range s.names {
		if i > 0 {
			if !found || !isObject(v) {
				return nil, false
			}
			v, found = child(v, name)
			continue
		}
		switch s.root { // a root that is missing or no object is an empty map
		case "metadata":
			if isObject(e.Metadata) {
				v, found = child(e.Metadata, name)
			}
		case "lead_data":
			if isObject(e.LeadData) {
				v, found = child(e.LeadData, name)
			}
		case "extra":
			for _, f := range e.Extra {
				if f.Name == name {
					v, found = f.JSON, true
					break
				}
			}
		}
	}
	if !found {
		return nil, true
	}
	return value(v), true
}

// machine is a VM and an environment, reused across events.
type machine struct {
	vm    vm.VM
	env   slotEnv
	slots []any
	fast  bool // the environment is the fast one
}

var machines = sync.Pool{New: func() any { return new(machine) }}

// machine returns a pooled machine whose environment holds e, the fast
// one when fast (every program has a fast form) and e's paths allow it;
// release it when done.
func (nd *needs) machine(e *schemas.Event, fast bool) *machine {
	m := machines.Get().(*machine)
	m.fast = fast && nd.fillSlots(m, e)
	if !m.fast {
		nd.fillSlow(&m.env.Env, e)
	}
	return m
}

// fillSlots sets m's fast environment from e; false when a slot cannot be
// resolved.
func (nd *needs) fillSlots(m *machine, e *schemas.Event) bool {
	nd.fill(&m.env.Env, e)
	m.slots = m.slots[:0]
	for i := range nd.slots {
		v, ok := nd.slots[i].resolve(e)
		if !ok {
			return false
		}
		m.slots = append(m.slots, v)
	}
	m.env.Slots = &m.slots
	return true
}

// run runs p on the machine's environment. An error of the fast program
// is given by the slow one, so that it reads the same either way.
func (m *machine) run(nd *needs, e *schemas.Event, p program) (any, error) {
	if m.fast {
		if out, err := m.vm.Run(p.fast, &m.env); err == nil {
			return out, nil
		}
		m.fast = false
		nd.fillSlow(&m.env.Env, e)
	}
	return m.vm.Run(p.slow, &m.env.Env)
}

func (m *machine) release() {
	m.env = slotEnv{}
	clear(m.slots)
	machines.Put(m)
}

// fill sets env's fields from e, but for metadata, lead_data and extra.
func (nd *needs) fill(env *Env, e *schemas.Event) {
	*env = Env{
		EventID: e.EventID, AccountID: e.AccountID, ResourceID: e.ResourceID, Sequence: e.Sequence, EventType: e.EventType,
		ResourceType: e.ResourceType, FlowID: e.FlowID, LeadID: e.LeadID, EntityType: e.EntityType,
		EntityID: e.EntityID, Outcome: e.Outcome,
	}
	if e.DurationMS != nil {
		env.DurationMS = *e.DurationMS
	}
	if nd.timestamp {
		env.Timestamp = e.Timestamp.UTC().Format(schemas.TimestampLayout)
	}
}

// fillSlow sets env from e for the slow programs.
func (nd *needs) fillSlow(env *Env, e *schemas.Event) {
	nd.fill(env, e)
	env.Metadata = nd.metadata.object(e.Metadata)
	env.LeadData = nd.leadData.object(e.LeadData)
	env.Extra = nd.extra.fields(e.Extra)
}
