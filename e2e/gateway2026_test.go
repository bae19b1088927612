package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gatewayConfig writes a gateway config with the given upstreams (name,
// then command) and returns its path.
func gatewayConfig(t *testing.T, ups ...[]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("mcp:\n  upstreams:\n")
	for _, u := range ups {
		fmt.Fprintf(&b, "    - name: %s\n      command: [", u[0])
		for i, a := range u[1:] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", a)
		}
		b.WriteString("]\n")
	}
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func toolPrices(res map[string]any) map[string]any {
	out := map[string]any{}
	for _, tool := range res["tools"].([]any) {
		m := tool.(map[string]any)
		out[m["name"].(string)] = m["price"]
	}
	return out
}

// A client pinned to 2026-07-28 through the gateway to two v2 servers: it
// discovers the gateway, lists both servers' tools prefixed and priced,
// calls each (a multi-round call included), and reads the budget refusal
// as a tool error.
func TestGateway2026TwoV2(t *testing.T) {
	h := newHome(t, "0.03", map[string]string{"mcp:alpha/*": "0.01", "mcp:beta/*": "0.01"})
	cfg := gatewayConfig(t, []string{"alpha", "node", v2Server(), "stdio"}, []string{"beta", "node", v2Server(), "stdio"})
	res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary, "discover": true,
		"args":  []string{"mcp", "--agent", "claude", "--config", cfg},
		"calls": []map[string]any{{"tool": "alpha__echo"}, {"tool": "beta__ask"}, {"tool": "beta__echo"}, {"tool": "alpha__echo"}}})
	if res["protocolVersion"] != "2026-07-28" || res["serverName"] != "caracal" {
		t.Errorf("negotiated %v with %v: want 2026-07-28 with caracal", res["protocolVersion"], res["serverName"])
	}
	if caps, _ := res["capabilities"].(map[string]any); caps["tools"] == nil {
		t.Errorf("discovered capabilities %v: want the upstreams' tools", res["capabilities"])
	}
	prices := toolPrices(res)
	for _, name := range []string{"alpha__echo", "alpha__ask", "beta__echo", "beta__ask"} {
		if p, ok := prices[name]; !ok || p == nil {
			t.Errorf("tool %s: listed %v, price %v; want it listed with a price", name, ok, p)
		}
	}
	if len(prices) != 4 {
		t.Errorf("tools %v: want exactly both servers' two tools", prices)
	}
	r := results(res)
	if len(r) != 4 || r[0]["text"] != "echo" || r[1]["text"] != "accept" || r[2]["text"] != "echo" {
		t.Fatalf("results %v: want echo, accept (multi-round), echo", r)
	}
	if sc, _ := r[3]["structuredContent"].(map[string]any); r[3]["isError"] != true || sc["code"] != "budget_exceeded" {
		t.Errorf("fourth call %v: want a readable budget_exceeded tool error", r[3])
	}
	var got []string
	for _, e := range h.events() {
		got = append(got, e.Resource+"="+e.Outcome)
	}
	want := "mcp:alpha/echo=charged mcp:beta/ask=charged mcp:beta/echo=charged mcp:alpha/echo=denied"
	if strings.Join(got, " ") != want {
		t.Errorf("ledger %v: want %s", got, want)
	}
}

// A pinned client through the gateway to a v2 server and a v1 server
// (server-everything): both servers' tools are listed and callable; the v1
// server's elicitation, which a 2026 host has no channel for, ends its call
// with a tool error naming why.
func TestGateway2026MixedUpstreams(t *testing.T) {
	h := newHome(t, "1", map[string]string{"mcp:v2/*": "0.01", "mcp:everything/*": "0.001"})
	cfg := gatewayConfig(t, []string{"v2", "node", v2Server(), "stdio"}, []string{"everything", "node", everythingJS(), "stdio"})
	res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary, "discover": true,
		"args": []string{"mcp", "--agent", "claude", "--config", cfg},
		"calls": []map[string]any{
			{"tool": "v2__echo"},
			{"tool": "everything__echo", "toolArgs": map[string]any{"message": "mixed"}},
			{"tool": "v2__ask"},
			{"tool": "everything__trigger-elicitation-request"},
		}})
	prices := toolPrices(res)
	for _, name := range []string{"v2__echo", "everything__echo", "everything__get-sum"} {
		if p, ok := prices[name]; !ok || p == nil {
			t.Errorf("tool %s: listed %v, price %v; want it listed with a price", name, ok, p)
		}
	}
	r := results(res)
	if len(r) != 4 {
		t.Fatalf("results %v", r)
	}
	if r[0]["text"] != "echo" || r[0]["isError"] != false {
		t.Errorf("v2__echo: %v", r[0])
	}
	if text, _ := r[1]["text"].(string); r[1]["isError"] != false || !strings.Contains(text, "mixed") {
		t.Errorf("everything__echo: %v", r[1])
	}
	if r[2]["text"] != "accept" {
		t.Errorf("v2__ask: %v; want the multi-round call completed", r[2])
	}
	if text, _ := r[3]["text"].(string); r[3]["isError"] != true || !strings.Contains(text, "no server-to-client requests") {
		t.Errorf("everything__trigger-elicitation-request: %v; want a tool error naming why the elicitation was refused", r[3])
	}
	var got []string
	for _, e := range h.events() {
		got = append(got, e.Resource+"="+e.Outcome)
	}
	if len(got) < 3 || strings.Join(got[:3], " ") != "mcp:v2/echo=charged mcp:everything/echo=charged mcp:v2/ask=charged" {
		t.Errorf("ledger %v", got)
	}
}

// A pinned client's subscriptions/listen through the gateway: both v2
// servers' tool list changes reach the client under its subscription.
func TestGateway2026Listen(t *testing.T) {
	h := newHome(t, "1", map[string]string{"mcp:alpha/*": "0.01", "mcp:beta/*": "0.01"})
	cfg := gatewayConfig(t, []string{"alpha", "node", v2Server(), "stdio"}, []string{"beta", "node", v2Server(), "stdio"})
	res := v2Client(t, append(h.env(), "V2_LISTEN=1"), map[string]any{"transport": "stdio", "command": binary,
		"args":   []string{"mcp", "--agent", "claude", "--config", cfg},
		"listen": map[string]any{"toolsListChanged": true}, "expectChanges": 2, "skipList": true,
		"calls": []map[string]any{{"tool": "alpha__change"}, {"tool": "beta__change"}}})
	if honored, _ := res["honored"].(map[string]any); honored["toolsListChanged"] != true {
		t.Errorf("honoured filter %v: want toolsListChanged", res["honored"])
	}
	if r := results(res); len(r) != 2 || r[0]["text"] != "changed" || r[1]["text"] != "changed" {
		t.Fatalf("results %v", r)
	}
	if res["changes"] != float64(2) {
		t.Errorf("%v tool list changes reached the client: want one from each upstream", res["changes"])
	}
	if res["closed"] != "local" {
		t.Errorf("subscription closed %v: want local", res["closed"])
	}
}
