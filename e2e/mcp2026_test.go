package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// v2Client runs e2e/node/v2-client.mjs (the official SDK's v2 client) with
// cfg and decodes its summary.
func v2Client(t *testing.T, env []string, cfg map[string]any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "v2-client.mjs", string(b))
	cmd.Dir = nodeDir
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("v2-client.mjs: %v\nstderr:\n%s", err, errOut.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("v2-client.mjs output: %v\n%s\nstderr:\n%s", err, out.String(), tail(errOut.String(), 3000))
	}
	if e, ok := res["error"]; ok {
		t.Fatalf("v2 client failed: %v\nstderr:\n%s", e, tail(errOut.String(), 3000))
	}
	return res
}

func v2Server() string { return filepath.Join(nodeDir, "v2-server.mjs") }

// results returns the client's call results.
func results(res map[string]any) []map[string]any {
	var out []map[string]any
	for _, r := range res["results"].([]any) {
		out = append(out, r.(map[string]any))
	}
	return out
}

// A client pinned to 2026-07-28, through caracal mcp on stdio, to a v2
// server: the multi-round call is charged once, and the call the budget
// no longer covers is refused with a tool error the client reads.
func TestMCP2026StdioPinned(t *testing.T) {
	for _, name := range []string{"", "mine"} {
		t.Run("name="+name, func(t *testing.T) {
			server := name
			if server == "" {
				server = "v2-server" // from server/discover, with no handshake
			}
			h := newHome(t, "0.01", map[string]string{"mcp:" + server + "/*": "0.01"})
			args := []string{"mcp", "--agent", "claude"}
			if name != "" {
				args = append(args, "--name", name)
			}
			res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
				"args": append(args, "--", "node", v2Server(), "stdio"), "tool": "ask", "n": 2})
			r := results(res)
			if len(r) != 2 || r[0]["text"] != "accept" || r[0]["isError"] != false {
				t.Fatalf("results %v: want the multi-round call completed", r)
			}
			sc, _ := r[1]["structuredContent"].(map[string]any)
			if r[1]["isError"] != true || sc["code"] != "budget_exceeded" {
				t.Errorf("second call %v: want a readable budget_exceeded tool error", r[1])
			}
			for _, tool := range res["tools"].([]any) {
				if tool.(map[string]any)["price"] == nil {
					t.Errorf("tool %v listed without a price", tool)
				}
			}
			ev := h.events()
			if len(ev) != 2 || ev[0].Outcome != "charged" || ev[0].Amount != "0.01" || ev[0].Resource != "mcp:"+server+"/ask" || ev[1].Code != "budget_exceeded" {
				t.Errorf("ledger %+v: want one charge of 0.01 for mcp:%s/ask, then a denial", ev, server)
			}
		})
	}
}

func TestMCP2026DeclineReleases(t *testing.T) {
	h := newHome(t, "1", map[string]string{"mcp:v2/*": "0.01"})
	res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args": []string{"mcp", "--agent", "claude", "--name", "v2", "--", "node", v2Server(), "stdio"}, "tool": "ask", "answer": "decline"})
	if r := results(res); r[0]["text"] != "decline" {
		t.Fatalf("results %v", r)
	}
	ev := h.events()
	if len(ev) != 1 || ev[0].Outcome != "refunded" || ev[0].Amount != "0.00" {
		t.Errorf("ledger %+v: want the declined exchange released", ev)
	}
}

// A trusted upstream called before any listing: Caracal's own tools/list
// carries the host's envelope, so the declared price is read.
func TestMCP2026Trusted(t *testing.T) {
	h := newHome(t, "1", nil)
	res := v2Client(t, append(h.env(), "V2_PRICED=1"), map[string]any{"transport": "stdio", "command": binary,
		"args": []string{"mcp", "--agent", "claude", "--name", "v2", "--trusted", "--", "node", v2Server(), "stdio"}, "tool": "echo", "skipList": true})
	if r := results(res); r[0]["text"] != "echo" {
		t.Fatalf("results %v", r)
	}
	ev := h.events()
	if len(ev) != 1 || ev[0].Outcome != "charged" || ev[0].Amount != "0.03" {
		t.Errorf("ledger %+v: want the declared 0.03 charged", ev)
	}
}

func TestMCP2026HTTPUpstream(t *testing.T) {
	h := newHome(t, "1", map[string]string{"mcp:v2/*": "0.01"})
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	startProcess(t, append(os.Environ(), "PORT="+port), addr, "node", v2Server(), "http")
	res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args": []string{"mcp", "--agent", "claude", "--name", "v2", "--upstream-url", "http://" + addr + "/mcp"}, "tool": "ask"})
	if r := results(res); r[0]["text"] != "accept" {
		t.Fatalf("results %v", r)
	}
	ev := h.events()
	if len(ev) != 1 || ev[0].Outcome != "charged" || ev[0].Amount != "0.01" {
		t.Errorf("ledger %+v: want one charge", ev)
	}
}

// Mixed eras: a v1 client through Caracal to a v2 server, and a v2 client
// in auto mode to a v1 server (server-everything).
func TestMCP2026MixedEras(t *testing.T) {
	t.Run("v1-client-to-v2-server", func(t *testing.T) {
		h := newHome(t, "1", map[string]string{"mcp:v2/*": "0.01"})
		res := nodeClient(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
			"args":     []string{"mcp", "--agent", "claude", "--name", "v2", "--", "node", v2Server(), "stdio"},
			"scenario": "calls", "tool": "echo", "toolArgs": map[string]any{}, "n": 2})
		for _, r := range res["results"].([]any) {
			if isErr, _ := r.(map[string]any)["isError"].(bool); isErr {
				t.Errorf("call result %v", r)
			}
		}
		if ev := h.events(); len(ev) != 2 || ev[0].Outcome != "charged" || ev[1].Outcome != "charged" {
			t.Errorf("ledger %+v: want two charges", ev)
		}
	})
	t.Run("v2-auto-client-to-v1-server", func(t *testing.T) {
		h := newHome(t, "1", everythingPrices)
		res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary, "mode": "auto",
			"args": []string{"mcp", "--agent", "claude", "--name", "everything", "--", "node", everythingJS(), "stdio"},
			"tool": "echo", "toolArgs": map[string]any{"message": "hi"}})
		if r := results(res); r[0]["isError"] != false || !strings.Contains(r[0]["text"].(string), "hi") {
			t.Fatalf("results %v", r)
		}
		if ev := h.events(); len(ev) != 1 || ev[0].Outcome != "charged" || ev[0].Amount != "0.001" {
			t.Errorf("ledger %+v: want one charge of 0.001", ev)
		}
	})
}

// A pinned client on the HTTP front: no initialize, no session; the key is
// checked on every request.
func TestMCP2026HTTPFront(t *testing.T) {
	h := newHome(t, "0.01", map[string]string{"mcp:v2/*": "0.01"})
	_, key, _ := strings.Cut(h.key(), " ")
	addr := freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--name", "v2", "--", "node", v2Server(), "stdio")
	res := v2Client(t, os.Environ(), map[string]any{"transport": "http", "url": "http://" + addr + "/mcp",
		"headers": map[string]string{"Authorization": "Bearer " + key}, "tool": "ask", "n": 2})
	r := results(res)
	if len(r) != 2 || r[0]["text"] != "accept" {
		t.Fatalf("results %v: want the multi-round call completed", r)
	}
	if sc, _ := r[1]["structuredContent"].(map[string]any); r[1]["isError"] != true || sc["code"] != "budget_exceeded" {
		t.Errorf("second call %v: want a budget_exceeded tool error", r[1])
	}
	ev := h.events()
	if len(ev) != 2 || ev[0].Outcome != "charged" || ev[1].Code != "budget_exceeded" {
		t.Errorf("ledger %+v", ev)
	}
}

// A price rule with charge_rounds (pricebook set --charge-rounds): every
// round of the multi-round call is charged.
func TestMCP2026ChargeRounds(t *testing.T) {
	h := newHome(t, "1", nil)
	h.run("pricebook", "set", "mcp:v2/*", "--per-call", "0.01", "--charge-rounds")
	res := v2Client(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args": []string{"mcp", "--agent", "claude", "--name", "v2", "--", "node", v2Server(), "stdio"}, "tool": "ask"})
	if r := results(res); r[0]["text"] != "accept" {
		t.Fatalf("results %v", r)
	}
	ev := h.events()
	if len(ev) != 2 || ev[0].Outcome != "charged" || ev[1].Outcome != "charged" || ev[0].Amount != "0.01" || ev[1].Amount != "0.01" {
		t.Errorf("ledger %+v: want both rounds charged 0.01", ev)
	}
}
