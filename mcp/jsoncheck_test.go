package mcp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
)

func TestRejectJSON(t *testing.T) {
	tests := []struct {
		in       string
		wantID   string
		wantCode int
	}{
		{`{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call"}`, "7", codeInvalidRequest},
		{`{"jsonrpc":"2.0","id":"a","params":{"name":"x","name":"y"}}`, `"a"`, codeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, "", codeInvalidRequest},
		{strings.Repeat("[", jsoncheck.MaxDepth+1), "", codeParseError},
	}
	for _, tc := range tests {
		err := jsoncheck.Check([]byte(tc.in), true)
		if err == nil {
			t.Fatalf("jsoncheck.Check(%.40s) accepted it", tc.in)
		}
		id, code, msg := rejectJSON([]byte(tc.in), err)
		if id != tc.wantID || code != tc.wantCode || msg == "" {
			t.Errorf("rejectJSON(%.40s) = %q, %d, %q; want id %q code %d", tc.in, id, code, msg, tc.wantID, tc.wantCode)
		}
	}
}

// TestCaseVariantKeysRefused drives a session: a message whose keys differ
// only in letter case is refused before it is priced or relayed, with an
// error that names both keys and the rule, and the session goes on.
func TestCaseVariantKeysRefused(t *testing.T) {
	tests := []struct {
		name, line string
		wantID     string
		wantMsg    string
	}{
		{"method beside METHOD", `{"jsonrpc":"2.0","id":6,"method":"ping","METHOD":"tools/call","params":{"name":"echo","arguments":{}}}`, "6", `duplicate key "METHOD": equal to "method" under Unicode case folding`},
		{"tool name beside Name", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","Name":"hidden","arguments":{}}}`, "7", `duplicate key "Name": equal to "name" under Unicode case folding`},
		{"id beside ID", `{"jsonrpc":"2.0","id":8,"ID":9,"method":"ping"}`, "null", `duplicate key "ID": equal to "id" under Unicode case folding`},
	}
	h := startHost(t, Options{Meter: newFakeMeter("1"), MaxMessageSize: 4096})
	h.init()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.send(tc.line)
			r := h.recv()
			if gjson.GetBytes(r, "error.code").Int() != codeInvalidRequest || !strings.Contains(gjson.GetBytes(r, "error.message").String(), tc.wantMsg) {
				t.Errorf("got %s, want code %d and %q", r, codeInvalidRequest, tc.wantMsg)
			}
			if id := gjson.GetBytes(r, "id").Raw; id != tc.wantID {
				t.Errorf("error answered to id %s, want %s", id, tc.wantID)
			}
			if p := h.call(fmt.Sprint(100+i), "ping", `{}`); !gjson.GetBytes(p, "result").Exists() {
				t.Errorf("ping after a refused message: %s", p)
			}
		})
	}
	if got := h.upstreamCalls(); len(got) != 0 {
		t.Errorf("refused messages reached the upstream as calls: %v", got)
	}
}
