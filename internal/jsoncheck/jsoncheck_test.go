package jsoncheck

import (
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
