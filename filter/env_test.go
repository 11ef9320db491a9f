package filter

import (
	"reflect"
	"testing"

	"github.com/firehose/firehose/schemas"
)

// eval runs x's slow program on e with the environment nd builds.
func eval(nd needs, x *Expr, e *schemas.Event) (any, error) {
	m := nd.machine(e, false)
	defer m.release()
	return m.run(&nd, e, program{slow: x.slow})
}

// whole is nd with every field it reads decoded entirely, as before paths.
func whole(nd needs) needs {
	for _, a := range []*access{&nd.metadata, &nd.leadData, &nd.extra} {
		if a.used {
			a.whole, a.paths = true, nil
		}
	}
	return nd
}

func TestPathsRead(t *testing.T) {
	for _, c := range []struct {
		src   string
		whole bool
		paths [][]string
	}{
		{`metadata.buyer_response.price * 100`, false, [][]string{{"buyer_response", "price"}}},
		{`metadata.a.b > 1 && metadata.a == nil && metadata["c"] == 2`, false, [][]string{{"a"}, {"c"}}},
		{`metadata?.a?.b ?? 3`, false, [][]string{{"a", "b"}}},
		{`len(metadata) > 1`, true, nil},
		{`metadata[event_id] == 1`, true, nil},
		{`$env.metadata.a == 1`, true, nil},
		{`all(metadata.items, {.price > 1})`, false, [][]string{{"items"}}},
	} {
		x, err := CompileExpr(c.src)
		if err != nil {
			t.Fatal(err)
		}
		a := x.needs.metadata
		if !a.used || a.whole != c.whole || !reflect.DeepEqual(a.paths, c.paths) {
			t.Errorf("%s: used %v whole %v paths %q; want whole %v paths %q", c.src, a.used, a.whole, a.paths, c.whole, c.paths)
		}
		// Constant paths are read through slots.
		if (x.fast != nil) != !c.whole {
			t.Errorf("%s: fast program %v, want %v", c.src, x.fast != nil, !c.whole)
		}
	}
}

// Reading only the paths an expression names gives exactly what decoding
// the whole of metadata, lead_data and extra gives: the same value or an
// error, for any expression and any object.
func FuzzPathsAsWhole(f *testing.F) {
	for _, c := range [][2]string{
		{`metadata.a.b * 2`, `{"a":{"b":3,"c":4}}`},
		{`metadata.a.b`, `{"a":5}`},
		{`metadata.a`, `{"a":{"b":1},"a":{"c":2}}`},
		{`metadata.a.b + metadata.a.c`, `{"a":{"b":1,"c":2}}`},
		{`metadata?.x?.y ?? "none"`, `{"x":null}`},
		{`extra.campaign.id == lead_data.q`, `{"q":"s"}`},
		{`metadata["a\"b"].c`, `{"a\"b":{"c":true}}`},
		{`metadata.a.b`, `[1,2]`},
		{`metadata`, `{"k":[1,{"z":null}]}`},
		{`metadata.a.b.c`, `{"a":{"b":null}}`},
		{`metadata?.a?.b?.c ?? lead_data.a`, `{"a":{"b":"s"}}`},
		{`metadata.a.b.c + 1`, `{"a":{"b":{"c":"x"}}}`},
		{`metadata.a[0].b`, `{"a":[{"b":1}]}`},
		{`metadata.a.b.upper()`, `{"a":{"b":"x"}}`},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, src, obj string) {
		x, err := CompileExpr(src)
		if err != nil {
			return
		}
		e, err := (schemas.JSON{}).Decode([]byte(`{"event_id":"e","timestamp":"2024-01-15T14:30:45Z","account_id":"a","resource_id":"r","sequence":1,"event_type":"t",` +
			`"metadata":` + obj + `,"lead_data":` + obj + `,"campaign":` + obj + `}`))
		if err != nil {
			return
		}
		got, gerr := eval(x.needs, x, e)
		want, werr := eval(whole(x.needs), x, e)
		if (gerr != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s on %s: paths give %v, %v; whole gives %v, %v", src, obj, got, gerr, want, werr)
		}
		fast, ferr := x.Eval(e)
		if (ferr != nil) != (werr != nil) || !reflect.DeepEqual(fast, want) {
			t.Fatalf("%s on %s: slots give %v, %v; whole gives %v, %v", src, obj, fast, ferr, want, werr)
		}
	})
}
