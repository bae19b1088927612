package fakeprovider

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestUsageRules(t *testing.T) {
	srv := httptest.NewServer(New(Options{OpenAIKey: "ko", AnthropicKey: "ka", Record: true}))
	defer srv.Close()
	chat := `{"model":"m","messages":[],"max_tokens":5}`
	tests := []struct {
		name, path, auth, body string
		hdr                    map[string]string
		status                 int
		checks                 map[string]int64 // gjson path → want
		contains               string
	}{
		{"chat capped by max_tokens", "/v1/chat/completions", "Bearer ko", chat, map[string]string{"Fake-Cached-Tokens": "3", "Fake-Reasoning-Tokens": "2"}, 200,
			map[string]int64{"usage.prompt_tokens": InputTokens([]byte(chat)) + 3, "usage.completion_tokens": 5, "usage.completion_tokens_details.reasoning_tokens": 2, "usage.prompt_tokens_details.cached_tokens": 3}, ""},
		{"overreport ignores max_tokens in usage only", "/v1/chat/completions", "Bearer ko", chat, map[string]string{"Fake-Mode": "overreport", "Fake-Output-Tokens": "1000000"}, 200,
			map[string]int64{"usage.completion_tokens": 1_000_000}, `"content":"w0 w1 w2 w3 w4 "`},
		{"overreport, anthropic", "/v1/messages", "", `{"model":"m","max_tokens":5,"messages":[]}`, map[string]string{"X-Api-Key": "ka", "Fake-Mode": "overreport", "Fake-Output-Tokens": "700"}, 200,
			map[string]int64{"usage.output_tokens": 700}, `"text":"w0 w1 w2 w3 w4 "`},
		{"responses", "/v1/responses", "Bearer ko", `{"model":"m","input":"x"}`, map[string]string{"Fake-Output-Tokens": "4"}, 200,
			map[string]int64{"usage.output_tokens": 4}, ""},
		{"messages", "/v1/messages", "", `{"model":"m","max_tokens":100,"messages":[]}`, map[string]string{"X-Api-Key": "ka", "Fake-Cache-Write-Tokens": "9"}, 200,
			map[string]int64{"usage.output_tokens": 12, "usage.cache_creation_input_tokens": 9}, ""},
		{"stream with usage", "/v1/chat/completions", "Bearer ko", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, nil, 200, nil, `"choices":[],"created"`},
		{"stream without usage", "/v1/chat/completions", "Bearer ko", `{"model":"m","stream":true}`, nil, 200, nil, "data: [DONE]"},
		{"wrong key", "/v1/chat/completions", "Bearer nope", chat, nil, 401, nil, ""},
		{"error500", "/v1/chat/completions", "Bearer ko", chat, map[string]string{"Fake-Mode": "error500"}, 500, nil, "fake internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			for path, want := range tt.checks {
				if got := gjson.GetBytes(b, path).Int(); got != want {
					t.Errorf("%s = %d, want %d in %s", path, got, want, b)
				}
			}
			if !strings.Contains(string(b), tt.contains) {
				t.Errorf("body lacks %q:\n%s", tt.contains, b)
			}
			if tt.name == "stream without usage" && strings.Contains(string(b), `"usage"`) {
				t.Errorf("usage sent without include_usage:\n%s", b)
			}
		})
	}
	if n := len(New(Options{}).Seen()); n != 0 {
		t.Errorf("a new server has seen %d requests", n)
	}
}
