package mcp

import (
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"
)

// MaxJSONDepth is the deepest nesting of arrays and objects the proxy
// accepts in a message. Real MCP traffic nests a few dozen levels at most;
// the bound keeps validation (which recurses) from exhausting the stack on
// a hostile message such as eight million '['.
const MaxJSONDepth = 512

// checkJSON rejects a message the proxy could read differently from the
// process it relays to: nesting deeper than MaxJSONDepth, or an object
// that repeats a key. Decoders disagree on repeated keys — gjson, which the
// proxy reads with, takes the first, while Go's encoding/json, JavaScript and
// Python take the last — so a host could otherwise show the proxy a "ping"
// or an allowed tool and have the upstream run a metered or hidden one.
//
// It is iterative, allocates only for objects, and does not itself validate
// the JSON: callers validate after it, once the depth is known to be safe.
// On invalid input it may return nil or an error; either way the validation
// that follows rejects the message.
//
// With dupKeys false only the depth is checked, for messages from an
// upstream, which the proxy relays rather than judges.
func checkJSON(raw []byte, dupKeys bool) error {
	type frame struct {
		object    bool
		expectKey bool
		keys      map[string]struct{}
	}
	var stack []frame
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{', '[':
			if len(stack) >= MaxJSONDepth {
				return &jsonCheckError{msg: fmt.Sprintf("nesting deeper than %d levels", MaxJSONDepth)}
			}
			stack = append(stack, frame{object: raw[i] == '{', expectKey: raw[i] == '{'})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		case '"':
			start := i
			escaped := false
			for i++; i < len(raw); i++ {
				if raw[i] == '\\' {
					escaped = true
					i++
					continue
				}
				if raw[i] == '"' {
					break
				}
			}
			n := len(stack)
			if !dupKeys || n == 0 || !stack[n-1].object || !stack[n-1].expectKey || i >= len(raw) {
				continue
			}
			top := &stack[n-1]
			top.expectKey = false
			key := string(raw[start+1 : i])
			if escaped {
				// "\u006dethod" is "method" to every decoder.
				if err := json.Unmarshal(raw[start:i+1], &key); err != nil {
					continue
				}
			}
			if top.keys == nil {
				top.keys = make(map[string]struct{}, 4)
			}
			if _, dup := top.keys[key]; dup {
				return &jsonCheckError{msg: fmt.Sprintf("duplicate key %q", key), dupKey: key}
			}
			top.keys[key] = struct{}{}
		}
	}
	return nil
}

// jsonCheckError is why checkJSON refused a message.
type jsonCheckError struct {
	msg    string
	dupKey string // the repeated key; "" for a depth error
}

func (e *jsonCheckError) Error() string { return e.msg }

// rejectJSON turns a checkJSON error into the JSON-RPC error the host gets:
// -32700 for depth (the message cannot be read safely at all), -32600 for a
// repeated key. The request's id is echoed when it is unambiguous, so the
// host can match the error to its request.
func rejectJSON(raw []byte, err error) (id string, code int, msg string) {
	e, ok := err.(*jsonCheckError)
	if !ok || e.dupKey == "" {
		return "", codeParseError, "Parse error: " + err.Error()
	}
	if e.dupKey != "id" {
		if v := gjson.GetBytes(raw, "id"); v.Type == gjson.Number || v.Type == gjson.String {
			id = v.Raw
		}
	}
	return id, codeInvalidRequest, "Invalid Request: " + err.Error() + "; a repeated key is read differently by different JSON decoders, so the proxy refuses it"
}
