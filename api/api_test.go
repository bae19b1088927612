package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// harness is the API over a fresh SQLite store, with a full and a
// read-only admin token.
type harness struct {
	t        *testing.T
	store    *sqlstore.Store
	srv      *httptest.Server
	admin    string
	readOnly string
	logs     *bytes.Buffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st := storetest.OpenSQLite(t)
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	eng := interpose.New(interpose.Options{Store: st, Logger: log, PriceCacheTTL: -1})
	s, err := New(Options{Store: st, Engine: eng, Logger: log, MaxDepth: 5})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: st, srv: httptest.NewServer(s), logs: logs}
	t.Cleanup(h.srv.Close)
	h.admin = h.token("ops", false)
	h.readOnly = h.token("auditor", true)
	return h
}

// token makes an admin token the way `caracal admin token create` does.
func (h *harness) token(name string, readOnly bool) string {
	h.t.Helper()
	tok, hash, prefix, err := apikey.GenerateWith(apikey.AdminScheme)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.store.CreateAdminToken(context.Background(), name, hash, prefix, readOnly); err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// resp is an answer: status, content type and body.
type resp struct {
	status int
	ctype  string
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem decodes an RFC 9457 answer and checks its shape.
func (r resp) problem(t *testing.T) map[string]any {
	t.Helper()
	if r.ctype != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %s", r.ctype, r.body)
	}
	var p map[string]any
	r.decode(t, &p)
	for _, k := range []string{"type", "title", "status", "detail", "code"} {
		if _, ok := p[k]; !ok {
			t.Fatalf("problem without %q: %s", k, r.body)
		}
	}
	if int(p["status"].(float64)) != r.status {
		t.Fatalf("problem status %v, HTTP status %d", p["status"], r.status)
	}
	return p
}

func (h *harness) do(method, path, token string, body any) resp {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp{status: res.StatusCode, ctype: res.Header.Get("Content-Type"), body: b}
}

// must does a request that must answer want, and decodes its body into v.
func (h *harness) must(want int, method, path, token string, body, v any) resp {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.status != want {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	if v != nil {
		r.decode(h.t, v)
	}
	return r
}

// fails does a request that must fail with status and code.
func (h *harness) fails(status int, code, method, path, token string, body any) map[string]any {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.status != status {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	p := r.problem(h.t)
	if p["code"] != code || p["type"] != problemTypeBase+code || p["title"] != http.StatusText(status) {
		h.t.Fatalf("%s %s: code %v, type %v, title %v; want %s; body %s", method, path, p["code"], p["type"], p["title"], code, r.body)
	}
	return p
}

// agentKey registers an agent and returns it with a new key.
func (h *harness) agentKey(name string) (string, string) {
	h.t.Helper()
	var a struct{ ID string }
	h.must(http.StatusCreated, "POST", "/v1/agents", h.admin, map[string]any{"name": name, "owner": "tests"}, &a)
	var k struct{ Key string }
	h.must(http.StatusCreated, "POST", "/v1/agents/"+name+"/keys", h.admin, nil, &k)
	return a.ID, k.Key
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	_, key := h.agentKey("bot")
	h.agentKey("other")

	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", "", nil)
	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", "cra_not-a-token", nil)
	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", "cra_"+strings.Repeat("A", 43), nil)
	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", "crk_"+strings.Repeat("A", 43), nil)
	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", "sk-something", nil)
	h.must(200, "GET", "/v1/agents", h.admin, nil, nil)
	h.must(200, "GET", "/v1/openapi.json", "", nil, nil)

	// A read-only token reads but changes nothing.
	h.must(200, "GET", "/v1/agents", h.readOnly, nil, nil)
	h.fails(403, CodeForbidden, "POST", "/v1/agents", h.readOnly, map[string]any{"name": "x", "owner": "y"})
	h.fails(403, CodeForbidden, "POST", "/v1/agents/bot/suspend", h.readOnly, nil)
	h.fails(403, CodeForbidden, "PUT", "/v1/pricebook/mcp:x/y", h.readOnly, map[string]any{"per_call": "1"})
	h.fails(403, CodeForbidden, "DELETE", "/v1/pricebook/mcp:x/y", h.readOnly, nil)

	// An agent key reaches metering and its own budgets only.
	h.fails(403, CodeForbidden, "GET", "/v1/agents", key, nil)
	h.fails(403, CodeForbidden, "GET", "/v1/agents/other", key, nil)
	h.fails(403, CodeForbidden, "GET", "/v1/ledger/events", key, nil)
	h.fails(403, CodeForbidden, "GET", "/v1/budgets?agent=other", key, nil)
	h.must(200, "GET", "/v1/budgets", key, nil, nil)
	h.must(200, "GET", "/v1/budgets?agent=bot", key, nil, nil)
	// And an admin token does not meter.
	h.fails(403, CodeForbidden, "POST", "/v1/reservations", h.admin, map[string]any{"resource": "mcp:x/y"})

	// A revoked token is refused on its very next request.
	tmp := h.token("temporary", false)
	h.must(200, "GET", "/v1/agents", tmp, nil, nil)
	if _, err := h.store.RevokeAdminToken(context.Background(), "temporary"); err != nil {
		t.Fatal(err)
	}
	h.fails(401, CodeUnauthorized, "GET", "/v1/agents", tmp, nil)

	// A suspended agent's key is refused with its own code.
	h.must(200, "POST", "/v1/agents/bot/suspend", h.admin, nil, nil)
	h.fails(403, "agent_suspended", "POST", "/v1/reservations", key, map[string]any{"resource": "mcp:x/y"})

	// No secret reaches the log.
	for _, secret := range []string{h.admin, h.readOnly, key, tmp} {
		if strings.Contains(h.logs.String(), secret) {
			t.Fatalf("a secret is in the log:\n%s", h.logs)
		}
	}
}

func TestRoutingProblems(t *testing.T) {
	h := newHarness(t)
	h.fails(404, CodeNotFound, "GET", "/v1/nothing-here", h.admin, nil)
	r := h.do("DELETE", "/v1/agents", h.admin, nil)
	if r.status != 405 || r.problem(t)["code"] != CodeMethodNotAllowed {
		t.Fatalf("DELETE /v1/agents: %d %s", r.status, r.body)
	}
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, `{"name": "x", "owner": "y", "colour": "red"}`)
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, `{"name": `)
}

func TestAgentsAndKeys(t *testing.T) {
	h := newHarness(t)
	var root struct {
		ID     string
		Name   string
		Status string
	}
	h.must(201, "POST", "/v1/agents", h.admin, map[string]any{"name": "root", "owner": "alice", "metadata": map[string]string{"team": "infra"}}, &root)
	if root.Name != "root" || root.Status != "active" || root.ID == "" {
		t.Fatalf("registered %+v", root)
	}
	h.fails(409, CodeConflict, "POST", "/v1/agents", h.admin, map[string]any{"name": "root", "owner": "alice"})
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, map[string]any{"name": "has space", "owner": "alice"})
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, map[string]any{"name": "x", "owner": " "})
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, map[string]any{"name": "x", "owner": "a\x1b[31m"})
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, map[string]any{"name": "x", "owner": "a", "parent": "ghost"})
	var child struct {
		ParentID string `json:"parent_id"`
	}
	h.must(201, "POST", "/v1/agents", h.admin, map[string]any{"name": "child", "owner": "alice", "parent": "root"}, &child)
	if child.ParentID != root.ID {
		t.Fatalf("child's parent %q, want %q", child.ParentID, root.ID)
	}
	var list []map[string]any
	h.must(200, "GET", "/v1/agents", h.admin, nil, &list)
	if len(list) != 2 {
		t.Fatalf("%d agents, want 2", len(list))
	}
	h.fails(404, CodeNotFound, "GET", "/v1/agents/ghost", h.admin, nil)

	var st struct{ Status string }
	h.must(200, "POST", "/v1/agents/root/suspend", h.admin, nil, &st)
	if st.Status != "suspended" {
		t.Fatalf("status %q after suspend", st.Status)
	}
	h.must(200, "POST", "/v1/agents/"+root.ID+"/resume", h.admin, nil, &st)
	if st.Status != "active" {
		t.Fatalf("status %q after resume", st.Status)
	}

	var k struct {
		ID        string
		Key       string
		Prefix    string
		AgentName string  `json:"agent_name"`
		ExpiresAt *string `json:"expires_at"`
	}
	h.must(201, "POST", "/v1/agents/root/keys", h.admin, map[string]any{"expires_in": "30d"}, &k)
	if !apikey.LooksValid(k.Key) || !strings.HasPrefix(k.Key, k.Prefix) || k.AgentName != "root" || k.ExpiresAt == nil {
		t.Fatalf("created key %+v", k)
	}
	h.fails(400, CodeInvalid, "POST", "/v1/agents/root/keys", h.admin, map[string]any{"expires_in": "soon"})
	var keys []map[string]any
	h.must(200, "GET", "/v1/agents/root/keys", h.admin, nil, &keys)
	if len(keys) != 1 || keys[0]["key"] != nil {
		t.Fatalf("keys %v: want one, without its secret", keys)
	}
	h.must(200, "GET", "/v1/keys", h.admin, nil, &keys)
	if len(keys) != 1 {
		t.Fatalf("all keys %v", keys)
	}
	var detail struct {
		Keys     []any
		Policies []any
		Budgets  []any
	}
	h.must(200, "GET", "/v1/agents/root", h.admin, nil, &detail)
	if len(detail.Keys) != 1 || detail.Policies == nil || detail.Budgets == nil {
		t.Fatalf("agent detail %+v", detail)
	}
	h.must(200, "POST", "/v1/keys/"+k.ID+"/revoke", h.admin, nil, nil)
	h.fails(409, CodeConflict, "POST", "/v1/keys/"+k.ID+"/revoke", h.admin, nil)
	h.fails(404, CodeNotFound, "POST", "/v1/keys/nope/revoke", h.admin, nil)
	h.fails(401, CodeUnauthorized, "GET", "/v1/budgets", k.Key, nil)
}

func TestPolicies(t *testing.T) {
	h := newHarness(t)
	h.agentKey("bot")
	var p struct {
		ID         string
		Version    int
		Limit      string
		Currency   string
		Window     string
		WindowType string `json:"window_type"`
		Timezone   string
		Allow      []string
		Active     bool
	}
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "bot", "limit": "25"}, &p)
	// The CLI's defaults.
	if p.Limit != "25.00" || p.Currency != "USD" || p.Window != "daily" || p.WindowType != "calendar" || p.Timezone != "UTC" || !p.Active || p.Version != 1 {
		t.Fatalf("created %+v", p)
	}
	for _, bad := range []map[string]any{
		{"agent": "bot"},
		{"agent": "bot", "limit": "-1"},
		{"agent": "bot", "limit": "abc"},
		{"agent": "bot", "limit": 5},
		{"agent": "bot", "limit": "5", "window": "fortnightly"},
		{"agent": "bot", "limit": "5", "timezone": "Mars/Olympus"},
		{"agent": "bot", "limit": "5", "currency": "dollars"},
		{"agent": "bot", "limit": "5", "window": "total", "window_type": "rolling"},
		{"agent": "ghost", "limit": "5"},
	} {
		h.fails(400, CodeInvalid, "POST", "/v1/policies", h.admin, bad)
	}
	h.must(200, "PATCH", "/v1/policies/"+p.ID, h.admin, map[string]any{"limit": "50", "allow": []string{"mcp:fs/*"}}, &p)
	if p.Version != 2 || p.Limit != "50.00" || len(p.Allow) != 1 {
		t.Fatalf("updated %+v", p)
	}
	p.Allow = nil
	h.must(200, "PATCH", "/v1/policies/"+p.ID, h.admin, map[string]any{"allow": []string{}}, &p)
	if p.Version != 3 || len(p.Allow) != 0 || p.Limit != "50.00" {
		t.Fatalf("allowlist cleared: %+v", p)
	}
	h.fails(400, CodeInvalid, "PATCH", "/v1/policies/"+p.ID, h.admin, map[string]any{})
	h.fails(404, CodeNotFound, "PATCH", "/v1/policies/nope", h.admin, map[string]any{"limit": "1"})
	h.must(200, "GET", "/v1/policies/"+p.ID, h.admin, nil, &p)
	var hist []map[string]any
	h.must(200, "GET", "/v1/policies/"+p.ID+"/history", h.admin, nil, &hist)
	if len(hist) != 3 {
		t.Fatalf("%d versions, want 3", len(hist))
	}
	h.must(200, "POST", "/v1/policies/"+p.ID+"/deactivate", h.admin, nil, &p)
	if p.Active {
		t.Fatalf("deactivated policy is active")
	}
	var pols []any
	h.must(200, "GET", "/v1/policies?agent=bot", h.admin, nil, &pols)
	if len(pols) != 0 {
		t.Fatalf("active policies %v, want none", pols)
	}
	h.must(200, "GET", "/v1/policies?agent=bot&all=true", h.admin, nil, &pols)
	if len(pols) != 1 {
		t.Fatalf("all policies %v, want one", pols)
	}
	h.fails(400, CodeInvalid, "GET", "/v1/policies?all=maybe", h.admin, nil)
}

func TestPricebook(t *testing.T) {
	h := newHarness(t)
	var rule map[string]any
	h.must(200, "PUT", "/v1/pricebook/mcp:search/*", h.admin, map[string]any{"per_call": "0.01", "per_unit": map[string]any{"path": "count", "price": "0.002"}}, &rule)
	if rule["resource"] != "mcp:search/*" || rule["per_call"] != "0.01" || rule["currency"] != "USD" {
		t.Fatalf("set %v", rule)
	}
	h.fails(400, CodeInvalid, "PUT", "/v1/pricebook/mcp:x", h.admin, map[string]any{})
	h.fails(400, CodeInvalid, "PUT", "/v1/pricebook/mcp:x", h.admin, map[string]any{"per_call": "-1"})
	h.fails(400, CodeInvalid, "PUT", "/v1/pricebook/mcp:x", h.admin, map[string]any{"per_call": "1", "currency": "usd!"})
	h.must(200, "GET", "/v1/pricebook/mcp:search/*", h.admin, nil, &rule)
	if rule["matched"] != nil {
		t.Fatalf("exact lookup %v", rule)
	}
	h.must(200, "GET", "/v1/pricebook/mcp:search/web", h.admin, nil, &rule)
	if rule["matched"] != "mcp:search/web" || rule["resource"] != "mcp:search/*" {
		t.Fatalf("matched lookup %v", rule)
	}
	h.fails(404, CodeNotFound, "GET", "/v1/pricebook/llm:none", h.admin, nil)

	yaml := "prices:\n  - resource: llm:openai/gpt-4o\n    input_per_million: \"2.50\"\n    output_per_million: \"10\"\n"
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/pricebook/import", strings.NewReader(yaml))
	req.Header.Set("Authorization", "Bearer "+h.admin)
	req.Header.Set("Content-Type", "application/yaml")
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"imported":1`) {
		t.Fatalf("import: %d %s", res.StatusCode, b)
	}
	h.fails(400, CodeInvalid, "POST", "/v1/pricebook/import", h.admin, "prices: [oops")
	var rules []any
	h.must(200, "GET", "/v1/pricebook", h.admin, nil, &rules)
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rules))
	}
	h.must(200, "DELETE", "/v1/pricebook/mcp:search/*", h.admin, nil, nil)
	h.fails(404, CodeNotFound, "DELETE", "/v1/pricebook/mcp:search/*", h.admin, nil)
}

func TestMetering(t *testing.T) {
	h := newHarness(t)
	botID, key := h.agentKey("bot")
	_, otherKey := h.agentKey("other")
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "bot", "limit": "1.00"}, nil)
	h.must(200, "PUT", "/v1/pricebook/http:search/query", h.admin, map[string]any{"per_call": "0.40"}, nil)

	var res struct {
		Allowed   bool
		ID        string
		Code      string
		Amount    string
		Remaining []struct{ Remaining string }
	}
	h.must(201, "POST", "/v1/reservations", key, map[string]any{"resource": "http:search/query"}, &res)
	if !res.Allowed || res.Code != "allowed" || res.Amount != "0.40" || res.ID == "" || len(res.Remaining) != 1 || res.Remaining[0].Remaining != "0.60" {
		t.Fatalf("reservation %+v", res)
	}
	// Another agent cannot settle it, nor learn that it exists.
	h.fails(404, CodeNotFound, "POST", "/v1/reservations/"+res.ID+"/settle", otherKey, map[string]any{"amount": "0"})
	var ev struct {
		ID      string
		Amount  string
		Outcome string
		AgentID string `json:"agent_id"`
	}
	h.must(200, "POST", "/v1/reservations/"+res.ID+"/settle", key, map[string]any{"amount": "0.35"}, &ev)
	if ev.Amount != "0.35" || ev.Outcome != "charged" || ev.AgentID != botID {
		t.Fatalf("settled %+v", ev)
	}
	first := ev.ID
	h.must(200, "POST", "/v1/reservations/"+res.ID+"/settle", key, map[string]any{"amount": "0.99"}, &ev)
	if ev.ID != first || ev.Amount != "0.35" {
		t.Fatalf("second settle %+v, want the first event", ev)
	}

	// An explicit amount over what is left is denied with 402.
	p := h.fails(402, "budget_exceeded", "POST", "/v1/reservations", key, map[string]any{"resource": "http:search/query", "amount": "0.70"})
	if p["allowed"] != false || p["price"] != "0.70" {
		t.Fatalf("denial %v", p)
	}
	rem := p["remaining"].([]any)
	if len(rem) != 1 || rem[0].(map[string]any)["remaining"] != "0.65" {
		t.Fatalf("denial remaining %v, want 0.65", rem)
	}

	// Released: nothing charged.
	h.must(201, "POST", "/v1/reservations", key, map[string]any{"resource": "http:search/query", "request_id": "call-7"}, &res)
	if res.ID != "call-7" {
		t.Fatalf("reservation ID %q, want the request_id given", res.ID)
	}
	h.fails(409, CodeConflict, "POST", "/v1/reservations", key, map[string]any{"resource": "http:search/query", "request_id": "call-7"})
	h.must(200, "POST", "/v1/reservations/call-7/release", key, map[string]any{"reason": "cancelled"}, &ev)
	if ev.Outcome != "refunded" || ev.Amount != "0.00" {
		t.Fatalf("released %+v", ev)
	}
	var budgets []struct{ Spent, Reserved, Remaining string }
	h.must(200, "GET", "/v1/budgets", key, nil, &budgets)
	if len(budgets) != 1 || budgets[0].Spent != "0.35" || budgets[0].Reserved != "0.00" || budgets[0].Remaining != "0.65" {
		t.Fatalf("budgets %+v", budgets)
	}

	for _, bad := range []map[string]any{
		{},
		{"resource": "has space"},
		{"resource": "x", "amount": "-1"},
		{"resource": "x", "amount": 1},
	} {
		h.fails(400, CodeInvalid, "POST", "/v1/reservations", key, bad)
	}
	h.fails(404, CodeNotFound, "POST", "/v1/reservations/unknown/settle", key, nil)
	h.fails(400, CodeInvalid, "POST", "/v1/reservations/"+first+"/settle", key, map[string]any{"amount": "1", "tokens": map[string]any{"input": 1}})
}

func TestLedgerPagesNewestFirst(t *testing.T) {
	h := newHarness(t)
	_, key := h.agentKey("bot")
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "bot", "limit": "100"}, nil)
	var want []string // request IDs, oldest first
	for i := range 7 {
		var res struct{ ID string }
		h.must(201, "POST", "/v1/reservations", key, map[string]any{"resource": "http:x/y", "amount": "1", "request_id": "r" + string(rune('a'+i))}, &res)
		h.must(200, "POST", "/v1/reservations/"+res.ID+"/settle", key, nil, nil)
		want = append(want, res.ID)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		var page struct {
			Events []struct {
				RequestID string `json:"request_id"`
			}
			NextCursor *string `json:"next_cursor"`
		}
		h.must(200, "GET", "/v1/ledger/events?limit=3&agent=bot&cursor="+cursor, h.admin, nil, &page)
		for _, e := range page.Events {
			got = append(got, e.RequestID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if len(got) != len(want) {
		t.Fatalf("paged %v, want %d events", got, len(want))
	}
	for i := range want {
		if got[i] != want[len(want)-1-i] {
			t.Fatalf("paged %v, want %v newest first", got, want)
		}
	}
	h.fails(400, CodeInvalid, "GET", "/v1/ledger/events?limit=0", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/ledger/events?since=yesterday", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/ledger/events?outcome=won", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/ledger/events?include_children=true", h.admin, nil)

	r := h.must(200, "GET", "/v1/ledger/export?format=csv", h.admin, nil, nil)
	if lines := strings.Count(string(r.body), "\n"); lines != 8 || !strings.HasPrefix(r.ctype, "text/csv") {
		t.Fatalf("CSV export: %d lines (%s), want a header and 7 rows", lines, r.ctype)
	}
	r = h.must(200, "GET", "/v1/ledger/export", h.admin, nil, nil)
	if lines := strings.Split(strings.TrimSpace(string(r.body)), "\n"); len(lines) != 7 || !json.Valid([]byte(lines[0])) {
		t.Fatalf("JSON Lines export: %q", r.body)
	}
	var sum []struct {
		Key     string
		Events  int
		Charged string
	}
	h.must(200, "GET", "/v1/ledger/summary?by=agent", h.admin, nil, &sum)
	if len(sum) != 1 || sum[0].Key != "bot" || sum[0].Events != 7 || sum[0].Charged != "7.00" {
		t.Fatalf("summary %+v", sum)
	}
	h.fails(400, CodeInvalid, "GET", "/v1/ledger/summary?by=month", h.admin, nil)
}

func TestStoreFailureIsGeneric(t *testing.T) {
	h := newHarness(t)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	// The token cannot even be checked: the answer says so without the
	// store's own words, which go to the log.
	r := h.do("GET", "/v1/agents", h.admin, nil)
	p := r.problem(t)
	if r.status != 503 || p["code"] != CodeUnavailable || strings.Contains(string(r.body), "sql") {
		t.Fatalf("closed store: %d %s", r.status, r.body)
	}
	if !strings.Contains(h.logs.String(), "sql") {
		t.Fatalf("the store error is not logged:\n%s", h.logs)
	}
}

func TestDelegations(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"root", "mid", "leaf"} {
		h.must(201, "POST", "/v1/agents", h.admin, map[string]any{"name": n, "owner": "tests"}, nil)
	}
	var own struct{ ID string }
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "root", "limit": "10"}, &own)

	h.fails(400, CodeInvalid, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "root", "child": "root", "limit": "1"})
	h.fails(400, CodeInvalid, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "root", "child": "mid", "limit": "11"})
	h.fails(400, CodeInvalid, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "root", "child": "ghost", "limit": "1"})
	h.fails(400, CodeInvalid, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "root", "child": "mid"})
	var d struct {
		PolicyID string `json:"policy_id"`
		Parent   string
		Child    string
		Limit    string
		Status   string
	}
	h.must(201, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "root", "child": "mid", "limit": "4"}, &d)
	if d.Parent != "root" || d.Child != "mid" || d.Limit != "4.00" || d.Status != "active" {
		t.Fatalf("delegation %+v", d)
	}
	// A cycle is a conflict with the hierarchy as it stands.
	h.fails(409, CodeConflict, "POST", "/v1/delegations", h.admin, map[string]any{"parent": "mid", "child": "root", "limit": "1"})
	var ds []map[string]any
	h.must(200, "GET", "/v1/delegations?agent=mid", h.admin, nil, &ds)
	if len(ds) != 1 {
		t.Fatalf("delegations %v", ds)
	}
	h.must(200, "POST", "/v1/delegations/"+d.PolicyID+"/revoke", h.admin, nil, &d)
	if d.Status != "revoked" || d.Limit != "0.00" {
		t.Fatalf("revoked %+v", d)
	}
	h.fails(409, CodeConflict, "POST", "/v1/delegations/"+d.PolicyID+"/revoke", h.admin, nil)
	h.fails(400, CodeInvalid, "POST", "/v1/delegations/"+own.ID+"/revoke", h.admin, nil)
	h.fails(404, CodeNotFound, "POST", "/v1/delegations/nope/revoke", h.admin, nil)
}

func TestRegisterRespectsMaxDepth(t *testing.T) {
	h := newHarness(t) // delegation.max_depth 5
	parent := ""
	for i := range 5 {
		body := map[string]any{"name": "a" + string(rune('0'+i)), "owner": "tests"}
		if parent != "" {
			body["parent"] = parent
		}
		h.must(201, "POST", "/v1/agents", h.admin, body, nil)
		parent = body["name"].(string)
	}
	p := h.fails(409, CodeConflict, "POST", "/v1/agents", h.admin, map[string]any{"name": "a5", "owner": "tests", "parent": parent})
	if !strings.Contains(p["detail"].(string), "delegation.max_depth 5") {
		t.Fatalf("detail %v", p["detail"])
	}
	// A UUID-shaped name would be ambiguous with an ID: the store's rule.
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, map[string]any{"name": "0b9c3c5e-6a3f-4d0e-9c1e-2f1f4e6f7a10", "owner": "tests"})
}

func TestMerkleEndpoints(t *testing.T) {
	h := newHarness(t)
	_, key := h.agentKey("bot")
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "bot", "limit": "10"}, nil)
	var st struct {
		TreeSize   int64 `json:"tree_size"`
		Checkpoint *struct{ Size int64 }
		Pending    int64 `json:"pending_events"`
	}
	h.must(200, "GET", "/v1/merkle/status", h.admin, nil, &st)
	if st.TreeSize != 0 || st.Checkpoint != nil {
		t.Fatalf("empty status %+v", st)
	}
	h.fails(404, CodeNotFound, "GET", "/v1/merkle/checkpoints/latest", h.admin, nil)

	var ids []string
	for range 3 {
		var res struct{ ID string }
		h.must(201, "POST", "/v1/reservations", key, map[string]any{"resource": "http:x/y", "amount": "1"}, &res)
		var ev struct{ ID string }
		h.must(200, "POST", "/v1/reservations/"+res.ID+"/settle", key, nil, &ev)
		ids = append(ids, ev.ID)
	}
	h.must(200, "GET", "/v1/merkle/status", h.admin, nil, &st)
	if st.Pending != 3 {
		t.Fatalf("status before integration %+v", st)
	}
	sg := storetest.NewSigner(t, h.store, "caracal.test/log")
	// Two batches: checkpoints of sizes 2 and 3.
	for range 2 {
		if _, _, err := h.store.Integrate(context.Background(), 2, sg); err != nil {
			t.Fatal(err)
		}
	}
	h.must(200, "GET", "/v1/merkle/status", h.admin, nil, &st)
	if st.TreeSize != 3 || st.Checkpoint == nil || st.Checkpoint.Size != 3 || st.Pending != 0 {
		t.Fatalf("status after integration %+v", st)
	}
	var cp struct {
		Size int64
		Note string
	}
	h.must(200, "GET", "/v1/merkle/checkpoints/3", h.admin, nil, &cp)
	if cp.Size != 3 || !strings.Contains(cp.Note, "caracal.test/log") {
		t.Fatalf("checkpoint %+v", cp)
	}
	var keys []struct {
		PublicKey string `json:"public_key"`
	}
	h.must(200, "GET", "/v1/merkle/keys", h.admin, nil, &keys)
	if len(keys) != 1 || keys[0].PublicKey != sg.VerifierKey() {
		t.Fatalf("keys %+v", keys)
	}
	// The proofs are the CLI's: the same functions build them.
	want, err := ledger.ProveInclusion(context.Background(), h.store, 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	r := h.must(200, "GET", "/v1/merkle/proofs/inclusion?event="+ids[1], h.admin, nil, nil)
	if strings.TrimSpace(string(r.body)) != string(wantJSON) {
		t.Fatalf("inclusion proof\n got %s\nwant %s", r.body, wantJSON)
	}
	r2 := h.must(200, "GET", "/v1/merkle/proofs/inclusion?seq=1&size=3", h.admin, nil, nil)
	if string(r2.body) != string(r.body) {
		t.Fatalf("by seq %s, by event %s", r2.body, r.body)
	}
	var cons struct {
		Old  map[string]any `json:"old"`
		New  map[string]any `json:"new"`
		Path []string       `json:"path"`
	}
	h.must(200, "GET", "/v1/merkle/proofs/consistency?from=2", h.admin, nil, &cons)
	wantCons, err := ledger.ProveConsistency(context.Background(), h.store, 2, -1)
	if err != nil {
		t.Fatal(err)
	}
	wantConsJSON, _ := json.Marshal(wantCons)
	if r := h.must(200, "GET", "/v1/merkle/proofs/consistency?from=2&to=3", h.admin, nil, nil); strings.TrimSpace(string(r.body)) != string(wantConsJSON) {
		t.Fatalf("consistency proof\n got %s\nwant %s", r.body, wantConsJSON)
	}
	h.fails(404, CodeNotFound, "GET", "/v1/merkle/proofs/consistency?from=1", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/merkle/proofs/inclusion", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/merkle/proofs/inclusion?seq=1&event=x", h.admin, nil)
	h.fails(404, CodeNotFound, "GET", "/v1/merkle/proofs/inclusion?seq=9", h.admin, nil)
	h.fails(404, CodeNotFound, "GET", "/v1/merkle/proofs/inclusion?seq=2&size=2", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/merkle/proofs/consistency", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/merkle/proofs/consistency?from=3&to=1", h.admin, nil)
	h.fails(400, CodeInvalid, "GET", "/v1/merkle/checkpoints/-1", h.admin, nil)
}

// TestOptionalBodies: settle and release take no body, an empty one, or a
// chunked empty one alike.
func TestOptionalBodies(t *testing.T) {
	h := newHarness(t)
	_, key := h.agentKey("bot")
	h.must(201, "POST", "/v1/policies", h.admin, map[string]any{"agent": "bot", "limit": "10"}, nil)
	for i, body := range []io.Reader{nil, strings.NewReader(""), io.MultiReader(strings.NewReader(""))} {
		var res struct{ ID string }
		h.must(201, "POST", "/v1/reservations", key, map[string]any{"resource": "http:x/y", "amount": "1"}, &res)
		req, err := http.NewRequest("POST", h.srv.URL+"/v1/reservations/"+res.ID+"/settle", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("body %d: settle answered %d %s", i, resp.StatusCode, b)
		}
	}
	h.fails(400, CodeInvalid, "POST", "/v1/agents", h.admin, "")
}
