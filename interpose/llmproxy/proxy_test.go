package llmproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

const (
	openAIKey    = "sk-prov-openai-secret"
	anthropicKey = "sk-prov-anthropic-secret"
)

var testRules = []policy.PriceRule{
	{Resource: "llm:openai/gpt-4o*", InputPerMillion: money.MustParse("2.50"), OutputPerMillion: money.MustParse("10"), CachedInputPerMillion: money.MustParse("1.25")},
	{Resource: "llm:openai/gpt-4o-mini*", InputPerMillion: money.MustParse("0.15"), OutputPerMillion: money.MustParse("0.60"), CachedInputPerMillion: money.MustParse("0.075")},
	{Resource: "llm:openai/o3*", InputPerMillion: money.MustParse("2"), OutputPerMillion: money.MustParse("8"), CachedInputPerMillion: money.MustParse("0.5"), ReasoningPerMillion: money.MustParse("8")},
	{Resource: "llm:openai/text-embedding-3-small", InputPerMillion: money.MustParse("0.02")},
	{Resource: "llm:anthropic/claude-*", InputPerMillion: money.MustParse("3"), OutputPerMillion: money.MustParse("15"), CachedInputPerMillion: money.MustParse("0.30"), CacheWritePerMillion: money.MustParse("3.75")},
	{Resource: "http:openai/v1/models", PerCall: money.MustParse("0.001")},
}

type harness struct {
	t     *testing.T
	fake  *fakeprovider.Server
	eng   *fakeEngine
	px    *Proxy
	front *httptest.Server
}

func newHarness(t *testing.T, limit string, mod func(*Options)) *harness {
	t.Helper()
	fake := fakeprovider.New(fakeprovider.Options{OpenAIKey: openAIKey, AnthropicKey: anthropicKey, Record: true})
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	eng := newFakeEngine(money.MustParse(limit), testRules...)
	o := Options{
		Engine: eng,
		Providers: []Provider{
			{Name: "openai", BaseURL: up.URL, APIKey: openAIKey},
			{Name: "anthropic", BaseURL: up.URL, APIKey: anthropicKey},
		},
		UpstreamTimeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	px, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(px)
	t.Cleanup(func() {
		front.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Wait(ctx); err != nil {
			t.Errorf("drains did not finish: %v", err)
		}
	})
	return &harness{t: t, fake: fake, eng: eng, px: px, front: front}
}

func (h *harness) request(ctx context.Context, method, path, key, body string, hdr map[string]string) *http.Request {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.front.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if key != "" {
		if strings.HasPrefix(path, "/anthropic/") {
			req.Header.Set("X-Api-Key", key)
		} else {
			req.Header.Set("Authorization", "Bearer "+key)
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

func (h *harness) do(method, path, key, body string, hdr map[string]string) (*http.Response, string) {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(h.request(context.Background(), method, path, key, body, hdr))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, string(b)
}

// event is the finished ledger entry of a request.
func (h *harness) event(reqID string) ledger.Event {
	h.t.Helper()
	for _, ev := range h.eng.finished() {
		if ev.RequestID == reqID {
			return ev
		}
	}
	h.t.Fatalf("no finished event for request %q", reqID)
	return ledger.Event{}
}

func rule(resource string) policy.PriceRule {
	best, _ := policy.MatchRule(testRules, resource)
	return best
}

func TestProxySettlesFromReportedUsage(t *testing.T) {
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":50}`
	chatStream := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}`
	chatStreamUsage := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
	responses := `{"model":"o3","input":"hi","max_output_tokens":40}`
	responsesStream := `{"model":"o3","input":"hi","stream":true}`
	embeddings := `{"model":"text-embedding-3-small","input":["a","b"]}`
	messages := `{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	messagesStream := `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	in := fakeprovider.InputTokens
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		resource                 string
		want                     policy.Tokens
		check                    func(t *testing.T, body string)
	}{
		{"chat", "POST", "/openai/v1/chat/completions", chat, map[string]string{"Fake-Cached-Tokens": "5", "Fake-Reasoning-Tokens": "3"},
			"llm:openai/gpt-4o", policy.Tokens{Input: in([]byte(chat)), CachedRead: 5, Output: 12, Reasoning: 3}, nil},
		{"chat stream, usage chunk stripped", "POST", "/openai/v1/chat/completions", chatStream, nil,
			"llm:openai/gpt-4o-mini", policy.Tokens{Input: in(injectIncludeUsage([]byte(chatStream))), Output: 12}, func(t *testing.T, body string) {
				if strings.Contains(body, `"usage":{`) || !strings.Contains(body, "data: [DONE]") || strings.Count(body, "data: ") != 15 {
					t.Errorf("stream body:\n%s", body)
				}
			}},
		{"chat stream, usage asked", "POST", "/openai/v1/chat/completions", chatStreamUsage, map[string]string{"Fake-Cached-Tokens": "4"},
			"llm:openai/gpt-4o", policy.Tokens{Input: in([]byte(chatStreamUsage)), CachedRead: 4, Output: 12}, func(t *testing.T, body string) {
				if !strings.Contains(body, `"usage":{`) || !strings.Contains(body, "data: [DONE]") {
					t.Errorf("stream body:\n%s", body)
				}
			}},
		{"responses", "POST", "/openai/v1/responses", responses, map[string]string{"Fake-Reasoning-Tokens": "20"},
			"llm:openai/o3", policy.Tokens{Input: in([]byte(responses)), Output: 12, Reasoning: 20}, nil},
		{"responses stream", "POST", "/openai/v1/responses", responsesStream, map[string]string{"Fake-Cached-Tokens": "2"},
			"llm:openai/o3", policy.Tokens{Input: in([]byte(responsesStream)), CachedRead: 2, Output: 12}, func(t *testing.T, body string) {
				if !strings.Contains(body, "event: response.completed") {
					t.Errorf("stream body:\n%s", body)
				}
			}},
		{"embeddings", "POST", "/openai/v1/embeddings", embeddings, nil,
			"llm:openai/text-embedding-3-small", policy.Tokens{Input: in([]byte(embeddings))}, nil},
		{"messages", "POST", "/anthropic/v1/messages", messages, map[string]string{"Fake-Cached-Tokens": "7", "Fake-Cache-Write-Tokens": "11"},
			"llm:anthropic/claude-sonnet-4-5", policy.Tokens{Input: in([]byte(messages)), CachedRead: 7, CacheWrite: 11, Output: 12}, nil},
		{"messages stream", "POST", "/anthropic/v1/messages", messagesStream, map[string]string{"Fake-Cached-Tokens": "7"},
			"llm:anthropic/claude-sonnet-4-5", policy.Tokens{Input: in([]byte(messagesStream)), CachedRead: 7, Output: 12}, func(t *testing.T, body string) {
				if !strings.Contains(body, "event: message_stop") {
					t.Errorf("stream body:\n%s", body)
				}
			}},
		{"per-request route", "GET", "/openai/v1/models", "", nil, "http:openai/v1/models", policy.Tokens{}, nil},
	}
	h := newHarness(t, "100", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.do(tt.method, tt.path, "crk_good", tt.body, tt.hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if resp.Header.Get(HeaderDecision) != "allowed" || resp.Header.Get(HeaderRemaining) == "" {
				t.Errorf("decision headers %v", resp.Header)
			}
			// Settlement precedes the end of the response: no waiting.
			ev := h.event(resp.Header.Get(HeaderRequestID))
			if ev.Outcome != policy.OutcomeCharged || ev.Tokens != tt.want {
				t.Fatalf("event %+v, want charged with %+v", ev, tt.want)
			}
			r := rule(tt.resource)
			want := r.PerCall
			if tt.resource[:4] == "llm:" {
				want = testCost(r, tt.want)
			}
			if ev.Amount != want || want == 0 {
				t.Errorf("amount %s, want %s", ev.Amount, want)
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
	if n := h.eng.open(); n != 0 {
		t.Errorf("%d reservations left open", n)
	}
}

func TestProxyKeyIsolation(t *testing.T) {
	h := newHarness(t, "100", nil)
	calls := []struct{ path, body string }{
		{"/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`},
		{"/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[],"stream":true}`},
		{"/anthropic/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}`},
		{"/anthropic/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[],"stream":true}`},
	}
	for _, c := range calls {
		// The agent sends its key in both places an SDK might.
		resp, body := h.do("POST", c.path, "crk_good", c.body, map[string]string{"Authorization": "Bearer crk_good", "X-Api-Key": "crk_good"})
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", c.path, resp.StatusCode, body)
		}
		for k, vs := range resp.Header {
			if strings.Contains(strings.Join(vs, " "), "sk-prov") {
				t.Errorf("response header %s leaks the provider key", k)
			}
		}
		if strings.Contains(body, "sk-prov") {
			t.Errorf("response body leaks the provider key")
		}
	}
	// A provider that quotes the key in an error must not leak it.
	resp, body := h.do("POST", "/openai/v1/chat/completions", "crk_good", calls[0].body, map[string]string{"Fake-Mode": "echo-key"})
	if resp.StatusCode != 401 || strings.Contains(body, "sk-prov") || !strings.Contains(body, "Incorrect API key provided: Bearer [redacted by Caracal]") {
		t.Errorf("echoed key: status %d, body %s", resp.StatusCode, body)
	}
	seen := h.fake.Seen()[:len(calls)]
	if len(h.fake.Seen()) != len(calls)+1 {
		t.Fatalf("provider saw %d requests, want %d", len(seen), len(calls))
	}
	// So must one on a route priced per request.
	resp, body = h.do("POST", "/openai/v1/files", "crk_good", `{}`, map[string]string{"Fake-Mode": "echo-key"})
	if resp.StatusCode != 401 || strings.Contains(body, "sk-prov") || !strings.Contains(body, "[redacted by Caracal]") {
		t.Errorf("echoed key on a per-request route: status %d, body %s", resp.StatusCode, body)
	}
	for _, s := range seen {
		if strings.Contains(s.Authorization+s.APIKey, "crk_") {
			t.Errorf("provider saw the agent key: %+v", s)
		}
		anth := strings.Contains(s.Path, "messages")
		if anth && (s.APIKey != anthropicKey || s.Authorization != "") || !anth && (s.Authorization != "Bearer "+openAIKey || s.APIKey != "") {
			t.Errorf("provider credentials %+v", s)
		}
	}
}

func TestProxyRefusals(t *testing.T) {
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":50}`
	msg := `{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[]}`
	tests := []struct {
		name       string
		limit      string
		allow      string
		down       bool
		path, body string
		status     int
		decision   string
		errType    string // at error.type
		remaining  string
	}{
		{"openai budget", "0.0001", "", false, "/openai/v1/chat/completions", chat, 402, "budget_exceeded", "insufficient_quota", "0.0001 USD"},
		{"anthropic budget", "0.0001", "", false, "/anthropic/v1/messages", msg, 402, "budget_exceeded", "billing_error", "0.0001 USD"},
		{"model not allowed", "100", "llm:openai/gpt-4o-mini*", false, "/openai/v1/chat/completions", chat, 402, "not_allowed", "permission_error", "100.00 USD"},
		{"store down", "100", "", true, "/openai/v1/chat/completions", chat, 503, "unavailable", "server_error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.limit, nil)
			h.eng.allow, h.eng.down = tt.allow, tt.down
			resp, body := h.do("POST", tt.path, "crk_good", tt.body, nil)
			if resp.StatusCode != tt.status || resp.Header.Get(HeaderDecision) != tt.decision || resp.Header.Get(HeaderRemaining) != tt.remaining {
				t.Fatalf("got %d %q %q, want %d %q %q", resp.StatusCode, resp.Header.Get(HeaderDecision), resp.Header.Get(HeaderRemaining), tt.status, tt.decision, tt.remaining)
			}
			if got := gjson.Get(body, "error.type").String(); got != tt.errType {
				t.Errorf("error.type %q, want %q in %s", got, tt.errType, body)
			}
			if msg := gjson.Get(body, "error.message").String(); !strings.Contains(msg, "Caracal") {
				t.Errorf("message %q", msg)
			}
			if len(h.fake.Seen()) != 0 {
				t.Error("refused request reached the provider")
			}
			if h.eng.open() != 0 {
				t.Error("reservation left open")
			}
		})
	}
}

func TestProxyBadInputAndUpstreamFailures(t *testing.T) {
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":50}`
	stream := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"stream":true}`
	msgStream := `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[]}`
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + closed.Addr().String()
	closed.Close()
	tests := []struct {
		name, path, key, body string
		hdr                   map[string]string
		status                int
		errType               string         // "" when the body is not checked
		outcome               policy.Outcome // "" when no reservation is made
		reached               bool           // the provider saw the request
	}{
		{"malformed json", "/openai/v1/chat/completions", "crk_good", `{"model":`, nil, 400, "invalid_request_error", "", false},
		{"malformed json anthropic", "/anthropic/v1/messages", "crk_good", `not json`, nil, 400, "invalid_request_error", "", false},
		{"no model", "/openai/v1/chat/completions", "crk_good", `{"messages":[]}`, nil, 400, "invalid_request_error", "", false},
		{"unknown provider", "/nope/v1/chat/completions", "crk_good", chat, nil, 404, "invalid_request_error", "", false},
		{"missing key", "/openai/v1/chat/completions", "", chat, nil, 401, "invalid_request_error", "", false},
		{"revoked key", "/anthropic/v1/messages", "crk_revoked", chat, nil, 401, "authentication_error", "", false},
		{"unknown key", "/openai/v1/chat/completions", "crk_nope", chat, nil, 401, "invalid_request_error", "", false},
		{"suspended agent", "/openai/v1/chat/completions", "crk_suspended", chat, nil, 403, "invalid_request_error", "", false},
		{"upstream 500", "/openai/v1/chat/completions", "crk_good", chat, map[string]string{"Fake-Mode": "error500"}, 500, "server_error", policy.OutcomeRefunded, true},
		{"upstream timeout", "/openai/v1/chat/completions", "crk_good", chat, map[string]string{"Fake-Mode": "hang"}, 504, "server_error", policy.OutcomeUnconfirmed, true},
		{"stream cut", "/openai/v1/chat/completions", "crk_good", stream, map[string]string{"Fake-Mode": "cut"}, 200, "", policy.OutcomeUnconfirmed, true},
		{"anthropic stream cut", "/anthropic/v1/messages", "crk_good", msgStream, map[string]string{"Fake-Mode": "cut"}, 200, "", policy.OutcomeUnconfirmed, true},
		{"no usage", "/openai/v1/chat/completions", "crk_good", chat, map[string]string{"Fake-Mode": "nousage"}, 200, "", policy.OutcomeUnconfirmed, true},
		{"stream without usage", "/anthropic/v1/messages", "crk_good", msgStream, map[string]string{"Fake-Mode": "nousage"}, 200, "", policy.OutcomeUnconfirmed, true},
		{"too large", "/openai/v1/chat/completions", "crk_good", `{"model":"gpt-4o","x":"` + strings.Repeat("a", 2000) + `"}`, nil, 413, "invalid_request_error", "", false},
		{"repeated model", "/openai/v1/chat/completions", "crk_good", `{"model":"gpt-4o","max_tokens":1,"messages":[],"model":"o1-pro","max_tokens":100000}`, nil, 400, "invalid_request_error", "", false},
		{"case-variant model", "/openai/v1/chat/completions", "crk_good", `{"model":"gpt-4o-mini","max_tokens":1,"messages":[],"MODEL":"o1-pro"}`, nil, 400, "invalid_request_error", "", false},
		{"case-variant max_tokens", "/anthropic/v1/messages", "crk_good", `{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[],"Max_Tokens":100000}`, nil, 400, "invalid_request_error", "", false},
		{"dot segments", "/openai/v1/chat/completions/x/..", "crk_good", chat, nil, 400, "invalid_request_error", "", false},
		{"empty segment", "/openai/v1//chat/completions", "crk_good", chat, nil, 400, "invalid_request_error", "", false},
		{"choices overflow", "/openai/v1/chat/completions", "crk_good", `{"model":"gpt-4o","messages":[],"max_tokens":4294967296,"n":4294967296}`, nil, 400, "invalid_request_error", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "100", func(o *Options) {
				o.UpstreamTimeout = 300 * time.Millisecond
				o.MaxRequestBytes = 1024
			})
			req := h.request(context.Background(), "POST", tt.path, tt.key, tt.body, tt.hdr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body) // a cut stream ends with an error
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if tt.errType != "" {
				if got := gjson.GetBytes(b, "error.type").String(); got != tt.errType {
					t.Errorf("error.type %q, want %q: %s", got, tt.errType, b)
				}
			}
			waitSettled(t, h.eng)
			evs := h.eng.finished()
			switch {
			case tt.outcome == "" && len(evs) != 0:
				t.Errorf("unexpected events %+v", evs)
			case tt.outcome != "" && (len(evs) != 1 || evs[0].Outcome != tt.outcome):
				t.Errorf("events %+v, want one %s", evs, tt.outcome)
			}
			if reached := len(h.fake.Seen()) > 0; reached != tt.reached {
				t.Errorf("provider reached = %v, want %v", reached, tt.reached)
			}
		})
	}
	t.Run("hostile nesting", func(t *testing.T) {
		h := newHarness(t, "100", nil)
		body := `{"model":"gpt-4o","x":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `}`
		resp, b := h.do("POST", "/openai/v1/chat/completions", "crk_good", body, nil)
		if resp.StatusCode != 400 || !strings.Contains(b, "nesting deeper than 512 levels") {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if len(h.fake.Seen()) != 0 || len(h.eng.finished()) != 0 {
			t.Errorf("a refused body reached the provider or the ledger")
		}
	})
	t.Run("unreachable provider", func(t *testing.T) {
		eng := newFakeEngine(money.MustParse("100"), testRules...)
		px, err := New(Options{Engine: eng, Providers: []Provider{{Name: "openai", BaseURL: deadURL, APIKey: "k"}}})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/openai/v1/chat/completions", strings.NewReader(chat))
		req.Header.Set("Authorization", "Bearer crk_good")
		px.ServeHTTP(rec, req)
		evs := eng.finished()
		if rec.Code != 502 || len(evs) != 1 || evs[0].Outcome != policy.OutcomeRefunded {
			t.Errorf("status %d, events %+v: want 502 and the reservation released", rec.Code, evs)
		}
	})
}

// waitSettled waits for background drains; settlement is otherwise
// synchronous with the response.
func waitSettled(t *testing.T, e *fakeEngine) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations still open", e.open())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxyClientDisconnectStillCharged(t *testing.T) {
	for _, tt := range []struct{ name, path, body string }{
		{"openai", "/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[],"stream":true}`},
		{"anthropic", "/anthropic/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "100", nil)
			ctx, cancel := context.WithCancel(context.Background())
			req := h.request(ctx, "POST", tt.path, "crk_good", tt.body, map[string]string{"Fake-Chunk-Delay": "20ms"})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatal(err)
			}
			cancel()
			resp.Body.Close()
			waitSettled(t, h.eng)
			evs := h.eng.finished()
			if len(evs) != 1 || evs[0].Outcome != policy.OutcomeCharged || evs[0].Tokens.Output != 12 {
				t.Fatalf("events %+v: want one charge for the 12 tokens the provider reported", evs)
			}
		})
	}
}

func TestProxyConcurrentStreamsNeverOverspend(t *testing.T) {
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"count"}],"max_tokens":1000,"stream":true}`
	r := rule("llm:openai/gpt-4o")
	worst, err := worstCase(r, estimateInput([]byte(body), DefaultModelLimits()["gpt-4o*"], 8192), 1000)
	if err != nil {
		t.Fatal(err)
	}
	limit, _ := worst.MulInt(10)
	h := newHarness(t, limit.String(), nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.DefaultClient.Do(h.request(context.Background(), "POST", "/openai/v1/chat/completions", "crk_good", body, map[string]string{"Fake-Chunk-Delay": "2ms"}))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	waitSettled(t, h.eng)
	if statuses[200] < 10 || statuses[200]+statuses[402] != 100 {
		t.Fatalf("statuses %v: want at least 10 admitted and the rest refused with 402", statuses)
	}
	if h.eng.peak > limit {
		t.Errorf("peak commitment %s exceeds limit %s", h.eng.peak, limit)
	}
	charged := 0
	for _, ev := range h.eng.finished() {
		if ev.Outcome == policy.OutcomeCharged && ev.Tokens.Output == 12 {
			charged++
		}
	}
	if charged != statuses[200] {
		t.Errorf("%d admitted, %d settled from usage", statuses[200], charged)
	}
}

func TestProxyOversizeEventsRelayedUnparsed(t *testing.T) {
	// Events above MaxEventBytes pass through untouched and unparsed: the
	// stream still reaches the client whole, and with no usage read the
	// call is charged as unconfirmed.
	h := newHarness(t, "100", func(o *Options) { o.MaxEventBytes = 64 })
	resp, body := h.do("POST", "/openai/v1/chat/completions", "crk_good", `{"model":"gpt-4o","messages":[],"stream":true}`, nil)
	if resp.StatusCode != 200 || strings.Count(body, "data: ") != 16 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("status %d, body:\n%s", resp.StatusCode, body)
	}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n\n") {
		if !strings.HasPrefix(line, "data: ") || !gjson.Valid(strings.TrimPrefix(line, "data: ")) && line != "data: [DONE]" {
			t.Errorf("damaged event %q", line)
		}
	}
	if ev := h.event(resp.Header.Get(HeaderRequestID)); ev.Outcome != policy.OutcomeUnconfirmed {
		t.Errorf("event %+v, want unconfirmed", ev)
	}
}
