package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// JSON-RPC error codes the proxy answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternalError  = -32603
)

// Meta keys Caracal reads and writes.
const (
	// PriceMetaKey is the tools/list _meta key holding a tool's price.
	PriceMetaKey = metering.PriceMetaKey
	// DecisionMetaKey is the CallToolResult _meta key holding a refusal's decision.
	DecisionMetaKey = metering.DecisionMetaKey
)

type msgKind int

const (
	kindInvalid msgKind = iota
	kindRequest
	kindNotification
	kindResponse
)

// message is one JSON-RPC message as read off the wire. raw is never
// modified; fields are views read with gjson.
type message struct {
	raw    []byte
	kind   msgKind
	id     string // the id's JSON text (e.g. `7` or `"a"`), "" if none
	method string
}

// parseMessage classifies one JSON-RPC message. ok is false for JSON that
// is valid but not a JSON-RPC message.
func parseMessage(raw []byte) (m message, ok bool) {
	m.raw = raw
	res := gjson.GetManyBytes(raw, "id", "method", "result", "error")
	id, method := res[0], res[1]
	if id.Exists() {
		m.id = canonicalID(id)
	}
	if method.Exists() {
		if method.Type != gjson.String {
			return m, false
		}
		m.method = method.Str
		if id.Exists() && id.Type != gjson.Null {
			m.kind = kindRequest
		} else {
			m.kind = kindNotification
		}
		return m, true
	}
	if res[2].Exists() || res[3].Exists() {
		m.kind = kindResponse
		return m, true
	}
	return m, false
}

// canonicalID returns an id's JSON text in one canonical form, so that a
// peer that re-encodes an id ("\u00e91" for "é1", Go's "\u003c" for "<")
// still matches the request it answers. A string with bytes beyond ASCII
// is re-encoded even without escapes: Go's encoder writes a raw U+2028 as
// "\u2028" and invalid UTF-8 as U+FFFD. Plain ASCII ids, and numbers, are
// kept as sent.
func canonicalID(id gjson.Result) string {
	if id.Type != gjson.String || (!strings.Contains(id.Raw, `\`) && isASCII(id.Raw)) {
		return id.Raw
	}
	str := id.Str
	if !utf8.ValidString(str) {
		// As a decoder reads it: each invalid byte is U+FFFD (the encoder
		// would write the escape "\ufffd" instead, a second spelling).
		str = string([]rune(str))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(str); err != nil {
		return id.Raw
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// firstNonSpace returns the first byte of b that is not JSON whitespace.
func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// errorResponse builds a JSON-RPC error response. id is the request id's
// JSON text; empty means null.
func errorResponse(id string, code int, msg string) []byte {
	if id == "" {
		id = "null"
	}
	m, _ := json.Marshal(msg)
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m)
}

// resultResponse builds a JSON-RPC success response around a raw result.
func resultResponse(id string, result []byte) []byte {
	out := make([]byte, 0, len(result)+48)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	out = append(out, '}')
	return out
}

// toolErrorResult builds a CallToolResult with isError: true, text as its
// only content, and details (if any) as structuredContent and as
// _meta[DecisionMetaKey].
func toolErrorResult(id, text string, details any) []byte {
	return resultResponse(id, metering.ToolErrorResult(text, details))
}

// requestBytes builds a request the proxy sends on its own behalf.
func requestBytes(id, method string, params []byte) []byte {
	out := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"method":%q`, id, method)
	if len(params) > 0 {
		out = append(out, `,"params":`...)
		out = append(out, params...)
	}
	return append(out, '}')
}

// notificationBytes builds a notification the proxy sends on its own behalf.
func notificationBytes(method string, params []byte) []byte {
	out := fmt.Appendf(nil, `{"jsonrpc":"2.0","method":%q`, method)
	if len(params) > 0 {
		out = append(out, `,"params":`...)
		out = append(out, params...)
	}
	return append(out, '}')
}

// gjsonKey escapes a literal object key for use as one gjson path component.
func gjsonKey(k string) string {
	var b strings.Builder
	for _, c := range k {
		switch c {
		case '.', '*', '?', '|', '#', '@', '\\', '!', '=', '<', '>', '%':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// replaceAt returns src with the value v (found in src by gjson, so v.Index
// is its offset) replaced by repl.
func replaceAt(src []byte, v gjson.Result, repl []byte) []byte {
	out := make([]byte, 0, len(src)-len(v.Raw)+len(repl))
	out = append(out, src[:v.Index]...)
	out = append(out, repl...)
	return append(out, src[v.Index+len(v.Raw):]...)
}

// setPath sets the value at a path in the JSON object src to the raw JSON
// val, creating intermediate objects, and returns the new bytes; src is
// not modified. Every other byte of src is kept as it was (the relay
// forwards what it does not rewrite untouched): keys that already exist
// keep their position, new keys are appended at the end of their object.
// Every path component must be a plain object key (escaped with gjsonKey);
// a component that names something other than an object is an error.
func setPath(src []byte, path []string, val []byte) ([]byte, error) {
	for i := 1; i < len(path); i++ {
		p := strings.Join(path[:i], ".")
		if v := gjson.GetBytes(src, p); v.Exists() && !v.IsObject() {
			return nil, fmt.Errorf("%s is not an object", p)
		}
	}
	if !gjson.ParseBytes(src).IsObject() {
		return nil, fmt.Errorf("not a JSON object")
	}
	return sjson.SetRawBytes(src, strings.Join(path, "."), val)
}

// compactLine makes msg fit on one line for newline-delimited framing.
// Newlines in valid JSON can only be insignificant whitespace.
func compactLine(msg []byte) []byte {
	if bytes.IndexByte(msg, '\n') < 0 && bytes.IndexByte(msg, '\r') < 0 {
		return msg
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, msg); err != nil {
		return bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r"), nil), []byte("\n"), []byte(" "))
	}
	return buf.Bytes()
}

// sizeString prints a byte count in a form a user reads at a glance.
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// maxToolNameLen bounds a tool name from the host, in bytes. No MCP server
// names its tools anywhere near this; a longer name is not a tool.
const maxToolNameLen = 256

// refusal is a message from the host refused before it is handled.
type refusal struct {
	// resp is the error the host is answered with.
	resp []byte
	// silent: on stdio the message is only logged (a notification gets no
	// answer); the HTTP front still answers it in the POST's response.
	silent bool
	reason string
}

func refuse(id, reason string) *refusal {
	return &refusal{resp: errorResponse(id, codeInvalidRequest, "Invalid Request: "+reason), reason: reason}
}

// echoableID returns the id's JSON text if the host can be answered with
// it (a string or a number), else "" (answered with id null).
func echoableID(id string) string {
	if id == "" {
		return ""
	}
	switch c := id[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return id
	}
	return ""
}

// checkHostMessage applies the JSON-RPC 2.0 rules a message from the host
// must meet before anything is relayed or metered. m and ok are
// parseMessage's result. A lax upstream may run whatever it is sent, so a
// message the proxy would not track as a request (no id, id null, an
// object as id) must never reach it as a tools/call.
func checkHostMessage(m message, ok bool) *refusal {
	id := echoableID(m.id)
	if !ok {
		return refuse(id, "not a JSON-RPC request, notification or response")
	}
	if v := gjson.GetBytes(m.raw, "jsonrpc"); v.Type != gjson.String || v.Str != "2.0" {
		return refuse(id, `"jsonrpc" must be "2.0"`)
	}
	if m.id != "" && id == "" {
		if m.kind == kindResponse {
			// A response cannot be answered; it is only dropped.
			r := refuse("", "a response id must be a string or a number")
			r.silent = true
			return r
		}
		if m.id == "null" {
			return refuse("", "a request id must be a string or a number, not null")
		}
		return refuse("", "a request id must be a string or a number")
	}
	if m.kind == kindNotification && m.method == "tools/call" {
		r := refuse("", "tools/call is a request and needs an id; a tools/call notification is not relayed")
		r.silent = true
		return r
	}
	return nil
}

// checkToolName says what is wrong with a tool name from the host, or "".
func checkToolName(name string) string {
	if len(name) > maxToolNameLen {
		return fmt.Sprintf("the tool name is %d bytes long; at most %d are allowed", len(name), maxToolNameLen)
	}
	if !utf8.ValidString(name) {
		return "the tool name is not valid UTF-8"
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Sprintf("the tool name contains the control character %U", r)
		}
	}
	return ""
}
