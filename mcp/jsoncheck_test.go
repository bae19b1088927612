package mcp

import (
	"strings"
	"testing"

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
