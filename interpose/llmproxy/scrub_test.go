package llmproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
)

// TestProxyScrubsKeyWhateverTheStatus drives an upstream that hands the
// provider key back in every place a response has room for it — echoed
// request headers on a 200, a redirect's Location and body, a 1xx
// informational response, trailers — and checks the client never sees it,
// raw or percent-encoded.
func TestProxyScrubsKeyWhateverTheStatus(t *testing.T) {
	// A key with characters a URL escapes, so the escaped form is tested.
	const key = "sk-prov/echo+secret="
	escaped := url.QueryEscape(key)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		h := w.Header()
		h.Set("Link", "<https://cdn.example/?k="+escaped+">; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("Link")
		h.Set("X-Echo-Authorization", auth)
		h.Set("X-Request-Key-Escaped", escaped)
		h.Set("X-Plain", "kept")
		h.Set("Trailer", "X-Trailer-Auth")
		switch r.URL.Path {
		case "/v1/redirect":
			http.Redirect(w, r, "https://elsewhere.example/v1/models?api_key="+escaped, http.StatusFound)
			h.Set("X-Trailer-Auth", auth)
			return
		case "/v1/chat/completions":
			h.Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
		default:
			h.Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"data":[]}`)
		}
		h.Set("X-Trailer-Auth", auth)
	}))
	t.Cleanup(up.Close)
	eng := newFakeEngine(money.MustParse("100"), testRules...)
	px, err := New(Options{Engine: eng, Providers: []Provider{{Name: "openai", BaseURL: up.URL, APIKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(px)
	t.Cleanup(front.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"2xx on a per-request route", "GET", "/openai/v1/models", "", 200},
		{"2xx on a metered route", "POST", "/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[],"max_tokens":5}`, 200},
		{"redirect", "GET", "/openai/v1/redirect", "", 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var informational []textproto.MIMEHeader
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(_ int, h textproto.MIMEHeader) error {
					mu.Lock()
					defer mu.Unlock()
					informational = append(informational, h)
					return nil
				},
			})
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var rd io.Reader
			if tt.body != "" {
				rd = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(ctx, tt.method, front.URL+tt.path, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer crk_good")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			leaks := func(where, s string) {
				if strings.Contains(s, key) || strings.Contains(s, escaped) || strings.Contains(s, "sk-prov") {
					t.Errorf("%s leaks the provider key: %q", where, s)
				}
			}
			for _, hs := range []http.Header{resp.Header, resp.Trailer} {
				for k, vs := range hs {
					leaks("header "+k, k+": "+strings.Join(vs, ", "))
				}
			}
			mu.Lock()
			if len(informational) == 0 {
				t.Error("the 1xx response was not relayed")
			}
			for _, h := range informational {
				for k, vs := range h {
					leaks("1xx header "+k, k+": "+strings.Join(vs, ", "))
				}
			}
			mu.Unlock()
			leaks("body", string(b))
			if resp.Header.Get("X-Plain") != "kept" {
				t.Errorf("a header without the key was dropped: %v", resp.Header)
			}
		})
	}
}

// TestScrubResponseShortKey: a placeholder key too short to be a secret
// does not strip the headers that happen to contain it, or a stream's
// Content-Type would go and its usage with it; a real key does.
func TestScrubResponseShortKey(t *testing.T) {
	tests := []struct {
		key      string
		wantCT   string
		wantEcho bool
	}{
		{"x", "text/event-stream", true},
		{"EMPTY", "text/event-stream", true},
		{"sk-a-real-key-0123", "text/event-stream", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			resp := &http.Response{StatusCode: 200, Header: http.Header{
				"Content-Type": {"text/event-stream"},
				"X-Echo":       {"Bearer " + tt.key},
			}, Body: io.NopCloser(strings.NewReader("data: x\n\n"))}
			scrubResponse(resp, keyForms(tt.key))
			if got := resp.Header.Get("Content-Type"); got != tt.wantCT {
				t.Errorf("Content-Type %q, want %q", got, tt.wantCT)
			}
			if got := resp.Header.Get("X-Echo") != ""; got != tt.wantEcho {
				t.Errorf("echoed key header kept = %v, want %v", got, tt.wantEcho)
			}
		})
	}
}
