package mcp

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// An upstream's server-to-client request cannot reach a 2026 host: the
// gateway answers the upstream with a JSON-RPC error naming why, the host
// sees no request, and the call ends with the upstream's result. A 2025
// host still receives the request (TestGateway covers that).
func TestGatewayRefusesServerRequestsFor2026Host(t *testing.T) {
	m := newFakeMeter("1")
	dir := t.TempDir()
	legacy := fakeSpec("beta", filepath.Join(dir, "b.log"))
	legacy.Env["CARACAL_FAKE_NO_DISCOVER"] = "1"
	h := startHost(t, Options{Meter: m}, fakeSpec("alpha", filepath.Join(dir, "a.log")), legacy)
	for i, tool := range []string{"alpha__sample", "beta__sample"} {
		id := fmt.Sprint(i + 1)
		h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":%q,"arguments":{},%s}}`, id, tool, env2026))
		r, before := h.response(id)
		for _, b := range before {
			if gjson.GetBytes(b, "method").String() == "sampling/createMessage" {
				t.Errorf("%s: the sampling request reached the 2026 host: %s", tool, b)
			}
		}
		text := gjson.GetBytes(r, "result.content.0.text").String()
		if gjson.Get(text, "code").Int() != codeMethodNotFound || !strings.Contains(text, "no server-to-client requests") ||
			!strings.Contains(text, "sampling/createMessage") || gjson.GetBytes(r, "result.resultType").String() != "complete" {
			t.Errorf("%s: %s; want the upstream's result carrying the gateway's refusal", tool, r)
		}
	}
}
