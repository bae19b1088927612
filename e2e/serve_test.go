package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/api"
	"github.com/caracal-dev/caracal/internal/pgtest"
)

// startServe runs `caracal serve` in h until the test ends and returns its
// base URL.
func startServe(t *testing.T, h *home, args ...string) string {
	t.Helper()
	stderr := &syncBuffer{}
	cmd := exec.Command(binary, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = h.env()
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("caracal serve exited with %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("caracal serve did not stop on SIGINT\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("caracal serve did not start: %v\n%s", err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("unexpected first line %q", line)
	}
	url, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return url
}

// adminToken creates an admin token with the CLI.
func (h *home) adminToken(name string, readOnly bool) string {
	h.t.Helper()
	args := []string{"admin", "token", "create", "--name", name, "-o", "json"}
	if readOnly {
		args = append(args, "--read-only")
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(h.run(args...)), &tok); err != nil {
		h.t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "cra_") {
		h.t.Fatalf("admin token %q", tok.Token)
	}
	return tok.Token
}

// client calls the API with one credential.
type client struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client // http.DefaultClient if nil
}

// call sends a request; body is JSON-encoded unless it is a string.
func (c client) call(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, b
}

// ok sends a request that must answer want and decodes the answer into v.
func (c client) ok(want int, method, path string, body, v any) []byte {
	c.t.Helper()
	status, b := c.call(method, path, body)
	if status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

// problem sends a request that must fail with status and code.
func (c client) problem(status int, code, method, path string, body any) map[string]any {
	c.t.Helper()
	got, b := c.call(method, path, body)
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil || got != status || p["code"] != code {
		c.t.Fatalf("%s %s: %d %s, want %d with code %s", method, path, got, b, status, code)
	}
	return p
}

// TestServeAdminOperations drives every admin operation over HTTP.
func TestServeAdminOperations(t *testing.T) {
	h := newHome(t, "10", nil)
	base := startServe(t, h)
	c := client{t: t, base: base, token: h.adminToken("ops", false)}

	// Agents.
	var bot struct{ ID string }
	c.ok(201, "POST", "/v1/agents", map[string]any{"name": "bot", "owner": "e2e", "metadata": map[string]string{"env": "test"}}, &bot)
	c.ok(201, "POST", "/v1/agents", map[string]any{"name": "helper", "owner": "e2e"}, nil)
	var agents []map[string]any
	c.ok(200, "GET", "/v1/agents", nil, &agents)
	if len(agents) != 3 {
		t.Fatalf("%d agents, want claude, bot and helper", len(agents))
	}
	c.ok(200, "GET", "/v1/agents/bot", nil, nil)
	c.ok(200, "POST", "/v1/agents/bot/suspend", nil, nil)
	c.ok(200, "POST", "/v1/agents/bot/resume", nil, nil)

	// Keys.
	var key struct{ ID, Key string }
	c.ok(201, "POST", "/v1/agents/bot/keys", map[string]any{}, &key)
	c.ok(200, "GET", "/v1/agents/bot/keys", nil, nil)
	c.ok(200, "GET", "/v1/keys", nil, nil)
	c.ok(200, "POST", "/v1/keys/"+key.ID+"/revoke", nil, nil)
	// The CLI sees what the API did.
	if out := h.run("agent", "key", "list", "--agent", "bot"); !strings.Contains(out, key.ID) {
		t.Fatalf("agent key list does not show the key the API made:\n%s", out)
	}

	// Policies.
	var pol struct{ ID string }
	c.ok(201, "POST", "/v1/policies", map[string]any{"agent": "bot", "limit": "5", "window": "monthly"}, &pol)
	c.ok(200, "GET", "/v1/policies?agent=bot", nil, nil)
	c.ok(200, "GET", "/v1/policies/"+pol.ID, nil, nil)
	c.ok(200, "PATCH", "/v1/policies/"+pol.ID, map[string]any{"limit": "6"}, nil)
	var hist []any
	c.ok(200, "GET", "/v1/policies/"+pol.ID+"/history", nil, &hist)
	if len(hist) != 2 {
		t.Fatalf("history %v", hist)
	}
	c.ok(200, "POST", "/v1/policies/"+pol.ID+"/deactivate", nil, nil)
	c.problem(400, "invalid_request", "POST", "/v1/policies", map[string]any{"agent": "bot", "limit": "5", "window": "fortnightly"})

	// Delegations.
	c.ok(201, "POST", "/v1/policies", map[string]any{"agent": "bot", "limit": "20"}, nil)
	var del struct {
		PolicyID string `json:"policy_id"`
		Status   string
	}
	c.ok(201, "POST", "/v1/delegations", map[string]any{"parent": "bot", "child": "helper", "limit": "2"}, &del)
	if del.Status != "active" {
		t.Fatalf("delegation %+v", del)
	}
	var dels []any
	c.ok(200, "GET", "/v1/delegations?agent=bot", nil, &dels)
	if len(dels) != 1 {
		t.Fatalf("delegations %v", dels)
	}
	c.ok(200, "POST", "/v1/delegations/"+del.PolicyID+"/revoke", nil, &del)
	if del.Status != "revoked" {
		t.Fatalf("revoked delegation %+v", del)
	}
	c.problem(400, "invalid_request", "POST", "/v1/delegations", map[string]any{"parent": "bot", "child": "bot", "limit": "1"})

	// Pricebook.
	c.ok(200, "PUT", "/v1/pricebook/mcp:fs/*", map[string]any{"per_call": "0.01"}, nil)
	c.ok(200, "GET", "/v1/pricebook/mcp:fs/read", nil, nil)
	c.ok(200, "GET", "/v1/pricebook", nil, nil)
	c.ok(200, "POST", "/v1/pricebook/import", `{"prices": [{"resource": "http:search/query", "per_call": "0.25"}]}`, nil)
	c.ok(200, "DELETE", "/v1/pricebook/mcp:fs/*", nil, nil)

	// Metering, so that the ledger holds something.
	claudeKey := strings.Fields(h.key())[1]
	agent := client{t: t, base: base, token: claudeKey}
	var res struct{ ID string }
	for range 3 {
		agent.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, &res)
		agent.ok(200, "POST", "/v1/reservations/"+res.ID+"/settle", nil, nil)
	}
	var budgets []struct{ Spent string }
	c.ok(200, "GET", "/v1/budgets?agent=claude", nil, &budgets)
	if len(budgets) != 1 || budgets[0].Spent != "0.75" {
		t.Fatalf("budgets %+v", budgets)
	}

	// Ledger.
	var page struct {
		Events []struct {
			ID     string
			Amount string
		}
		NextCursor *string `json:"next_cursor"`
	}
	c.ok(200, "GET", "/v1/ledger/events?agent=claude&limit=2", nil, &page)
	if len(page.Events) != 2 || page.NextCursor == nil {
		t.Fatalf("first page %+v", page)
	}
	c.ok(200, "GET", "/v1/ledger/events?agent=claude&limit=2&cursor="+*page.NextCursor, nil, &page)
	if len(page.Events) != 1 || page.NextCursor != nil {
		t.Fatalf("last page %+v", page)
	}
	c.ok(200, "GET", "/v1/ledger/summary?by=resource", nil, nil)
	// Merkle: the integrator serve runs puts the events in the tree.
	var st struct {
		TreeSize int64 `json:"tree_size"`
	}
	waitFor(t, "the events to be integrated", func() bool {
		c.ok(200, "GET", "/v1/merkle/status", nil, &st)
		return st.TreeSize == 3
	})
	csv := c.ok(200, "GET", "/v1/ledger/export?format=csv", nil, nil)
	if n := strings.Count(string(csv), "\n"); n != 4 {
		t.Fatalf("CSV export has %d lines, want a header and 3 rows:\n%s", n, csv)
	}
	// The same rows as the CLI's export (both read after integration, so
	// that every seq is settled).
	if cli := h.run("ledger", "export", "--format", "csv"); cli != string(csv) {
		t.Fatalf("API export differs from caracal ledger export:\nAPI:\n%s\nCLI:\n%s", csv, cli)
	}

	c.ok(200, "GET", "/v1/merkle/checkpoints", nil, nil)
	var cp struct{ Size int64 }
	c.ok(200, "GET", "/v1/merkle/checkpoints/latest", nil, &cp)
	c.ok(200, "GET", "/v1/merkle/checkpoints/"+itoa(cp.Size), nil, nil)
	var keys []struct {
		PublicKey string `json:"public_key"`
	}
	c.ok(200, "GET", "/v1/merkle/keys", nil, &keys)
	if len(keys) == 0 {
		t.Fatal("no signing key")
	}
	proof := c.ok(200, "GET", "/v1/merkle/proofs/inclusion?event="+page.Events[0].ID, nil, nil)
	file := filepath.Join(t.TempDir(), "proof.json")
	if err := os.WriteFile(file, proof, 0o600); err != nil {
		t.Fatal(err)
	}
	h.run("merkle", "verify-proof", file, "--key", keys[0].PublicKey)
	c.ok(200, "GET", "/v1/merkle/proofs/consistency?from=0", nil, nil)
	c.problem(404, "not_found", "GET", "/v1/merkle/checkpoints/999", nil)

	// The document served is the one checked in.
	var doc struct{ Paths map[string]any }
	(client{t: t, base: base}).ok(200, "GET", "/v1/openapi.json", nil, &doc)
	if len(doc.Paths) == 0 {
		t.Fatal("openapi.json has no paths")
	}
	// The usual health and metrics endpoints.
	(client{t: t, base: base}).ok(200, "GET", "/healthz", nil, nil)
	(client{t: t, base: base}).ok(200, "GET", "/readyz", nil, nil)
	if m := (client{t: t, base: base}).ok(200, "GET", "/metrics", nil, nil); !bytes.Contains(m, []byte("caracal_")) {
		t.Fatal("/metrics has no caracal metrics")
	}
}

// TestServeReservationOverBudget: a reservation the budget cannot cover is
// refused with 402, its code and what is left.
func TestServeReservationOverBudget(t *testing.T) {
	h := newHome(t, "1.00", map[string]string{"http:search/*": "0.40"})
	base := startServe(t, h)
	agent := client{t: t, base: base, token: strings.Fields(h.key())[1]}
	var res struct {
		ID        string
		Remaining []struct{ Remaining string }
	}
	agent.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, &res)
	agent.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, &res)
	if res.Remaining[0].Remaining != "0.20" {
		t.Fatalf("remaining after two reservations %+v, want 0.20", res.Remaining)
	}
	p := agent.problem(402, "budget_exceeded", "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"})
	rem, _ := p["remaining"].([]any)
	if p["allowed"] != false || len(rem) != 1 || rem[0].(map[string]any)["remaining"] != "0.20" {
		t.Fatalf("denial %v", p)
	}
	// Releasing one makes room again.
	agent.ok(200, "POST", "/v1/reservations/"+res.ID+"/release", nil, nil)
	agent.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, nil)
	ev := h.events()
	if len(ev) != 2 || ev[0].Outcome != "denied" || ev[0].Code != "budget_exceeded" || ev[1].Outcome != "refunded" {
		t.Fatalf("ledger %+v, want the denial and the release", ev)
	}
}

// TestServeAgentKeyScope: an agent key reaches metering and its own
// budgets, never another agent or an admin endpoint.
func TestServeAgentKeyScope(t *testing.T) {
	h := newHome(t, "5", nil)
	h.run("agent", "register", "--name", "other", "--owner", "e2e")
	base := startServe(t, h)
	agent := client{t: t, base: base, token: strings.Fields(h.key())[1]}
	agent.ok(200, "GET", "/v1/budgets", nil, nil)
	agent.ok(200, "GET", "/v1/budgets?agent=claude", nil, nil)
	agent.problem(403, "forbidden", "GET", "/v1/budgets?agent=other", nil)
	agent.problem(403, "forbidden", "GET", "/v1/agents/other", nil)
	for _, p := range api.Routes() {
		method, path, _ := strings.Cut(p, " ")
		if strings.HasPrefix(path, "/v1/reservations") || path == "/v1/budgets" || path == "/v1/openapi.json" {
			continue
		}
		agent.problem(403, "forbidden", method, fill(path), nil)
	}
}

// pathParam matches a route's {param} or {param...}.
var pathParam = regexp.MustCompile(`\{[a-z_.]+\}`)

// fill gives a route's path parameters plausible values.
func fill(path string) string { return pathParam.ReplaceAllString(path, "x") }

// TestServeReadOnlyToken: a read-only admin token reads, and every
// request that would change something is refused.
func TestServeReadOnlyToken(t *testing.T) {
	h := newHome(t, "5", nil)
	base := startServe(t, h)
	ro := client{t: t, base: base, token: h.adminToken("auditor", true)}
	ro.ok(200, "GET", "/v1/agents", nil, nil)
	ro.ok(200, "GET", "/v1/budgets", nil, nil)
	for _, p := range api.Routes() {
		method, path, _ := strings.Cut(p, " ")
		if method == "GET" {
			continue
		}
		ro.problem(403, "forbidden", method, fill(path), map[string]any{})
	}
	// Nothing changed.
	var agents []any
	ro.ok(200, "GET", "/v1/agents", nil, &agents)
	if len(agents) != 1 {
		t.Fatalf("agents %v", agents)
	}
}

// TestServeRevokedAdminToken: a token revoked with the CLI is refused on
// its next request.
func TestServeRevokedAdminToken(t *testing.T) {
	h := newHome(t, "5", nil)
	base := startServe(t, h)
	c := client{t: t, base: base, token: h.adminToken("temp", false)}
	c.ok(200, "GET", "/v1/agents", nil, nil)
	h.run("admin", "token", "revoke", "temp")
	c.problem(401, "unauthorized", "GET", "/v1/agents", nil)
	if out := h.run("admin", "token", "list"); !strings.Contains(out, "temp") {
		t.Fatalf("admin token list:\n%s", out)
	}
}

// TestServeTwoProcessesPostgres: two `caracal serve` processes over one
// PostgreSQL database share budgets, and a reservation made through one is
// settled through the other: the API keeps no reservation in memory.
func TestServeTwoProcessesPostgres(t *testing.T) {
	h := newHomeEnv(t, "1.00", map[string]string{"http:search/*": "0.30"}, "CARACAL_DATABASE_URL="+pgtest.URL(t))
	a := client{t: t, base: startServe(t, h), token: strings.Fields(h.key())[1]}
	b := client{t: t, base: startServe(t, h), token: a.token}
	var res struct{ ID string }
	a.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, &res)
	var ev struct{ Amount, Outcome string }
	b.ok(200, "POST", "/v1/reservations/"+res.ID+"/settle", map[string]any{"amount": "0.25"}, &ev)
	if ev.Amount != "0.25" || ev.Outcome != "charged" {
		t.Fatalf("settled through the other process: %+v", ev)
	}
	// 0.25 spent: three more reservations of 0.30 do not fit in 1.00,
	// whichever process takes them.
	a.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, nil)
	b.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"}, nil)
	p := a.problem(402, "budget_exceeded", "POST", "/v1/reservations", map[string]any{"resource": "http:search/query"})
	if rem := p["remaining"].([]any); rem[0].(map[string]any)["remaining"] != "0.15" {
		t.Fatalf("remaining %v, want 0.15", rem)
	}
}

// TestServeHTTPS: with --tls-cert and --tls-key, serve answers over HTTPS
// only, as the other listeners do.
func TestServeHTTPS(t *testing.T) {
	ca, certFile, keyFile := tlsFiles(t, 1)
	h := newHome(t, "5", nil)
	base := startServe(t, h, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("serve listens on %s, want https", base)
	}
	c := client{t: t, base: base, token: h.adminToken("ops", false),
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}}
	var agents []any
	c.ok(200, "GET", "/v1/agents", nil, &agents)
	if len(agents) != 1 {
		t.Fatalf("agents %v", agents)
	}
	// Plain HTTP on the TLS port is not served.
	if res, err := http.Get("http://" + strings.TrimPrefix(base, "https://") + "/v1/openapi.json"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS listener")
		}
	}
}
