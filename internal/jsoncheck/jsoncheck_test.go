package jsoncheck

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // error text; "" for none
	}{
		{"plain request", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,{"b":2}]}}}`, ""},
		{"same key in sibling objects", `{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`, ""},
		{"key text inside a string value", `{"a":"\"a\":1","b":"{\"a\":2}"}`, ""},
		{"escaped quote in a key", `{"a\"b":1,"a":2}`, ""},
		{"repeated method", `{"jsonrpc":"2.0","id":2,"method":"ping","method":"tools/call"}`, `duplicate key "method"`},
		{"repeated tool name", `{"method":"tools/call","params":{"name":"echo","name":"hidden"}}`, `duplicate key "name"`},
		{"repeated argument", `{"params":{"arguments":{"count":1},"arguments":{"count":1000}}}`, `duplicate key "arguments"`},
		{"escaped repeat", `{"method":"ping","\u006dethod":"tools/call"}`, `duplicate key "method"`},
		{"repeat deep in an array", `[{"id":1},{"params":{"a":{"k":1,"k":2}}}]`, `duplicate key "k"`},
		{"deep but allowed", strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), ""},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "nesting deeper than 512 levels"},
		{"hostile depth", strings.Repeat("[", 8<<20), "nesting deeper than 512 levels"},
		{"unterminated string", `{"a":"b`, ""},
		{"case variant of model", `{"model":"gpt-4o-mini","MODEL":"o3"}`, `duplicate key "MODEL": equal to "model" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"case variant of max_tokens", `{"model":"m","max_tokens":1,"MAX_TOKENS":100000}`, `duplicate key "MAX_TOKENS": equal to "max_tokens" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"mixed case variant, nested", `{"params":{"Name":"echo","nAME":"hidden"}}`, `duplicate key "nAME": equal to "Name" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"escaped case variant", `{"method":"ping","\u004dETHOD":"tools/call"}`, `duplicate key "METHOD": equal to "method" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"Kelvin sign folds to k", `{"k":1,"\u212a":2}`, `duplicate key "K": equal to "k" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"long s folds to S", `{"S":1,"ſ":2}`, `duplicate key "ſ": equal to "S" under Unicode case folding, so a case-insensitive decoder reads both as one key`},
		{"case variants in sibling objects", `{"a":{"model":1},"b":{"MODEL":2}}`, ""},
		{"dotted and dotless i differ", `{"i":1,"ı":2,"İ":3}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.in), true)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckDepthOnly(t *testing.T) {
	if err := Check([]byte(`{"a":1,"a":2}`), false); err != nil {
		t.Errorf("repeated key with dupKeys false: %v, want it relayed", err)
	}
	if err := Check([]byte(strings.Repeat("[", MaxDepth+1)), false); err == nil {
		t.Error("hostile depth with dupKeys false was accepted")
	}
}

// TestFoldMatchesEncodingJSON pins the folding rule to what it guards
// against: two keys are refused exactly when encoding/json would decode
// both into the same struct field.
func TestFoldMatchesEncodingJSON(t *testing.T) {
	pairs := [][2]string{
		{"model", "MODEL"}, {"max_tokens", "Max_Tokens"}, {"k", "\u212a"}, {"K", "\u212a"},
		{"s", "ſ"}, {"ß", "ẞ"}, {"σ", "ς"}, {"Σ", "ς"}, {"ǅ", "ǆ"}, {"i", "ı"}, {"i", "İ"},
		{"model", "model_"}, {"a-b", "A_B"}, {"ﬀ", "ff"}, {"é", "É"}, {"e\u0301", "é"},
	}
	for _, p := range pairs {
		t.Run(p[0]+"/"+p[1], func(t *testing.T) {
			var first, second string
			if err := json.Unmarshal([]byte(`"`+p[0]+`"`), &first); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(`"`+p[1]+`"`), &second); err != nil {
				t.Fatal(err)
			}
			typ := reflect.StructOf([]reflect.StructField{{
				Name: "F", Type: reflect.TypeFor[int](), Tag: reflect.StructTag(fmt.Sprintf(`json:%q`, first)),
			}})
			v := reflect.New(typ)
			if err := json.Unmarshal([]byte(`{"`+p[1]+`":1}`), v.Interface()); err != nil {
				t.Fatal(err)
			}
			same := v.Elem().Field(0).Int() == 1
			err := Check([]byte(`{"`+p[0]+`":0,"`+p[1]+`":1}`), true)
			if refused := err != nil; refused != same {
				t.Errorf("Check(%q beside %q) = %v; encoding/json reads them as one field: %v", first, second, err, same)
			}
		})
	}
}

// BenchmarkCheckManyKeys guards the O(n) bound: one object of many keys.
func BenchmarkCheckManyKeys(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range 100_000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"Key%d":%d`, i, i)
	}
	sb.WriteByte('}')
	raw := []byte(sb.String())
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := Check(raw, true); err != nil {
			b.Fatal(err)
		}
	}
}
