package llmproxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/sse"
	"github.com/caracal-dev/caracal/policy"
)

func TestFieldScanner(t *testing.T) {
	tests := []struct {
		name, doc, want string
		max             int
	}{
		{"object at end", `{"id":"x","choices":[{"usage":1}],"usage":{"a":1,"b":[1,2]}}`, `{"a":1,"b":[1,2]}`, 100},
		{"object first", `{"usage": {"a":"}\"{"} , "id":"x"}`, `{"a":"}\"{"}`, 100},
		{"nested usage ignored", `{"data":{"usage":{"a":1}},"x":2}`, ``, 100},
		{"key in string value ignored", `{"a":"\"usage\":{}","b":1}`, ``, 100},
		{"scalar", `{"usage":42}`, `42`, 100},
		{"null", `{"usage":null}`, `null`, 100},
		{"whitespace", "{\n  \"usage\" :\n  {\"a\": 1}\n}\n", `{"a": 1}`, 100},
		{"escaped key not matched", `{"us\u0061ge":{"a":1}}`, ``, 100},
		{"longer key", `{"usages":{"a":1},"usage":{"b":2}}`, `{"b":2}`, 100},
		{"over bound", `{"usage":{"a":"0123456789"}}`, ``, 8},
		{"not an object", `[{"usage":1}]`, ``, 100},
		{"truncated", `{"usage":{"a":1`, ``, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Feed in every split of two pieces: the result must not depend
			// on how the transport chunks the body.
			for cut := 0; cut <= len(tt.doc); cut++ {
				s := newFieldScanner("usage", tt.max)
				s.Write([]byte(tt.doc[:cut]))
				s.Write([]byte(tt.doc[cut:]))
				if got := string(s.Value()); got != tt.want {
					t.Fatalf("cut %d: got %q, want %q", cut, got, tt.want)
				}
			}
		})
	}
}

func TestSSESplitter(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		events []string // raw events as cut
		data   []string // parsed data of each event
	}{
		{"lf", "data: a\n\ndata: b\n\n", []string{"data: a\n\n", "data: b\n\n"}, []string{"a", "b"}},
		{"crlf", "data: a\r\n\r\nevent: x\r\ndata: b\r\n\r\n", []string{"data: a\r\n\r", "\nevent: x\r\ndata: b\r\n\r"}, []string{"a", "b"}},
		{"cr", "data: a\r\rdata: b\r\r", []string{"data: a\r\r", "data: b\r\r"}, []string{"a", "b"}},
		{"multi-line data and comments", ": ping\ndata: {\"a\":\ndata: 1}\n\n", []string{": ping\ndata: {\"a\":\ndata: 1}\n\n"}, []string{"{\"a\":\n1}"}},
		{"no space after colon", "data:x\n\n", []string{"data:x\n\n"}, []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for chunk := 1; chunk <= len(tt.stream); chunk++ {
				var sp sse.Splitter
				var pend []byte
				var got []string
				in := []byte(tt.stream)
				for len(in) > 0 {
					n := min(chunk, len(in))
					data := in[:n]
					in = in[n:]
					for len(data) > 0 {
						i := sp.Scan(data)
						if i < 0 {
							pend = append(pend, data...)
							break
						}
						pend = append(pend, data[:i]...)
						got = append(got, string(pend))
						pend = nil
						data = data[i:]
					}
				}
				// The trailing LF of a CRLF blank line arrives with the next
				// event or stays pending; bytes are never lost.
				if strings.Join(got, "")+string(pend) != tt.stream {
					t.Fatalf("chunk %d: bytes changed", chunk)
				}
				if len(got) != len(tt.events) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, tt.events)
				}
				for i := range got {
					if got[i] != tt.events[i] {
						t.Fatalf("chunk %d: event %d = %q, want %q", chunk, i, got[i], tt.events[i])
					}
					var ev sse.Event
					sse.Parse([]byte(got[i]), &ev)
					if string(ev.Data) != tt.data[i] {
						t.Fatalf("chunk %d: data %d = %q, want %q", chunk, i, ev.Data, tt.data[i])
					}
				}
			}
		})
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"{\"model\":\"m\",\"stream\":true}\n", "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}\n"},
		{`{"model":"m","stream_options":null}`, `{"model":"m","stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream_options":{}}`, `{"model":"m","stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream_options":{ }}`, `{"model":"m","stream_options":{"include_usage":true }}`},
		{`{"model":"m","stream_options":{"include_obfuscation":false}}`, `{"model":"m","stream_options":{"include_usage":true,"include_obfuscation":false}}`},
		{`{"stream_options":{"include_usage":false},"model":"m"}`, `{"stream_options":{"include_usage":true},"model":"m"}`},
		{`{"stream_options": {"x":1, "include_usage" : null}}`, `{"stream_options": {"x":1, "include_usage" : true}}`},
	}
	for _, tt := range tests {
		got := injectIncludeUsage([]byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("injectIncludeUsage(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if !gjson.ValidBytes(got) || !gjson.GetBytes(got, "stream_options.include_usage").Bool() {
			t.Errorf("injectIncludeUsage(%s) = %s: not valid or not set", tt.in, got)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		ep   endpoint
		body string
		want llmRequest
	}{
		{epChat, `{"model":"gpt-4o","max_tokens":100,"max_completion_tokens":50,"stream":true}`, llmRequest{model: "gpt-4o", stream: true, maxOutput: 50, choices: 1}},
		{epChat, `{"model":"gpt-4o","max_tokens":100,"n":3,"stream_options":{"include_usage":true}}`, llmRequest{model: "gpt-4o", maxOutput: 100, choices: 3, wantsUsage: true}},
		{epChat, `{"model":"gpt-4o","max_completion_tokens":null,"max_tokens":7}`, llmRequest{model: "gpt-4o", maxOutput: 7, choices: 1}},
		{epCompletions, `{"model":"x","max_tokens":10,"n":2,"best_of":5}`, llmRequest{model: "x", maxOutput: 10, choices: 5}},
		{epResponses, `{"model":"o3","max_output_tokens":900,"max_tokens":5}`, llmRequest{model: "o3", maxOutput: 900, choices: 1}},
		{epMessages, `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true}`, llmRequest{model: "claude-sonnet-4-5", stream: true, maxOutput: 1024, choices: 1}},
		{epEmbeddings, `{"model":"text-embedding-3-small","input":"hi"}`, llmRequest{model: "text-embedding-3-small", choices: 1}},
		{epChat, `{"model":"gpt-4o","max_tokens":"12"}`, llmRequest{model: "gpt-4o", choices: 1}},
	}
	for _, tt := range tests {
		if got := parseRequest(tt.ep, []byte(tt.body)); got != tt.want {
			t.Errorf("parseRequest(%s) = %+v, want %+v", tt.body, got, tt.want)
		}
	}
}

func TestEstimateInput(t *testing.T) {
	limit := ModelLimit{Context: 100_000, Output: 4096}
	img := `{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 50_000) + `"}}`
	imgBody := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look"},` + img + `]}]}`
	anthImg := `{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + strings.Repeat("B", 9000) + `"}}]}]}`
	tests := []struct {
		name string
		body string
		want int64
	}{
		{"text", `{"model":"m","messages":[{"role":"user","content":"hello"}]}`, 60 + estimateOverhead},
		{"openai image counts fixed", imgBody, int64(len(imgBody)-len(img)) + 8192 + estimateOverhead},
		{"anthropic image", anthImg, int64(len(anthImg)-len(anthImg[strings.Index(anthImg, `{"type":"image"`):len(anthImg)-4])) + 8192 + estimateOverhead},
		{"previous response", `{"model":"m","previous_response_id":"resp_1","input":"hi"}`, 100_000},
		{"file by id", `{"model":"m","input":[{"type":"input_file","file_id":"f"}]}`, 100_000},
		{"capped by context", `{"model":"m","input":"` + strings.Repeat("x", 200_000) + `"}`, 100_000},
		{"file by url", `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x/a.pdf"}]}]}`, 100_000},
		{"document from a url", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/a.pdf"}}]}]}`, 100_000},
		{"hosted tool", `{"model":"m","input":"hi","tools":[{"type":"function","name":"f"},{"type":"web_search"}]}`, 100_000},
		{"anthropic server tool", `{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_fetch_20250910","name":"web_fetch"}]}`, 100_000},
		{"remote mcp servers", `{"model":"m","max_tokens":5,"messages":[],"mcp_servers":[{"type":"url","url":"https://x"}]}`, 100_000},
		{"client tools only", `{"model":"m","max_tokens":5,"messages":[],"tools":[{"name":"get","input_schema":{}}]}`, 85 + estimateOverhead},
		{"inline document", `{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"abc"}}]}]}`, 112 + estimateOverhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimateInput([]byte(tt.body), limit, 8192); got != tt.want {
				t.Errorf("estimateInput = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestLimitTable(t *testing.T) {
	lt := newLimitTable(DefaultModelLimits(), map[string]ModelLimit{"my-model": {Context: 10, Output: 5}}, defaultFallbackLimit)
	tests := []struct {
		model string
		want  ModelLimit
	}{
		{"gpt-4o-2024-08-06", ModelLimit{128_000, 16_384}},
		{"gpt-4.1-mini", ModelLimit{1_047_576, 32_768}},
		{"my-model", ModelLimit{10, 5}},
		{"claude-3-5-haiku-latest", ModelLimit{200_000, 8_192}},
		{"unknown", defaultFallbackLimit},
	}
	for _, tt := range tests {
		if got := lt.lookup(tt.model); got != tt.want {
			t.Errorf("lookup(%s) = %+v, want %+v", tt.model, got, tt.want)
		}
	}
}

// TestLimitTableRanksLikePriceRules: at equal literal characters the
// model-limit lookup took the pattern with fewer stars while price rules
// took the one with more, so a model's limit and its price could come from
// opposite patterns.
func TestLimitTableRanksLikePriceRules(t *testing.T) {
	patterns := map[string]ModelLimit{"gpt*4o": {Context: 1}, "gpt*4o*": {Context: 2}}
	lt := newLimitTable(nil, patterns, defaultFallbackLimit)
	rule, ok := policy.MatchRule([]policy.PriceRule{{Resource: "gpt*4o"}, {Resource: "gpt*4o*"}}, "gpt-4o")
	if !ok {
		t.Fatal("no price rule matches gpt-4o")
	}
	if got, want := lt.lookup("gpt-4o"), patterns[rule.Resource]; got != want {
		t.Errorf("lookup(gpt-4o) = %+v, want %+v (the limit of %q, the price rule's pattern)", got, want, rule.Resource)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"gpt-4o*", "gpt-4o", true}, {"gpt-4o*", "gpt-4o-mini", true}, {"gpt-4o*", "gpt-4", false},
		{"*mini*", "gpt-4o-mini-2024", true}, {"a*b*c", "abbc", true}, {"a*b*c", "acb", false}, {"x", "x", true}, {"x", "xy", false},
	}
	for _, tt := range tests {
		if got := policy.MatchPattern(tt.p, tt.s); got != tt.want {
			t.Errorf("policy.MatchPattern(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

func TestWorstCase(t *testing.T) {
	m := money.MustParse
	rule := policy.PriceRule{InputPerMillion: m("2.50"), OutputPerMillion: m("10"), CachedInputPerMillion: m("1.25"), CacheWritePerMillion: m("3.125"), ReasoningPerMillion: m("12")}
	tests := []struct {
		name    string
		r       policy.PriceRule
		in, out int64
		want    money.Amount
	}{
		{"max rates", rule, 1_000_000, 1_000_000, m("15.125")},
		{"rounds up", policy.PriceRule{InputPerMillion: m("0.000000001")}, 1, 0, m("0.000000001")},
		{"per call added", policy.PriceRule{PerCall: m("0.01"), OutputPerMillion: m("1")}, 0, 1000, m("0.011")},
		{"zero", policy.PriceRule{}, 5, 5, 0},
	}
	for _, tt := range tests {
		got, err := worstCase(tt.r, tt.in, tt.out)
		if err != nil || got != tt.want {
			t.Errorf("%s: worstCase = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := worstCase(policy.PriceRule{InputPerMillion: money.Max}, 1<<40, 0); err == nil {
		t.Error("overflow not reported")
	}
}

func TestUsageFrom(t *testing.T) {
	tests := []struct {
		kind Kind
		ep   endpoint
		u    string
		want policy.Tokens
		ok   bool
	}{
		{KindOpenAI, epChat, `{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"cached_tokens":30},"completion_tokens_details":{"reasoning_tokens":20}}`, policy.Tokens{Input: 70, CachedRead: 30, Output: 30, Reasoning: 20}, true},
		{KindOpenAI, epResponses, `{"input_tokens":10,"output_tokens":5,"input_tokens_details":{"cached_tokens":4},"output_tokens_details":{"reasoning_tokens":1}}`, policy.Tokens{Input: 6, CachedRead: 4, Output: 4, Reasoning: 1}, true},
		{KindOpenAI, epEmbeddings, `{"prompt_tokens":8,"total_tokens":8}`, policy.Tokens{Input: 8}, true},
		{KindAnthropic, epMessages, `{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7}`, policy.Tokens{Input: 10, CachedRead: 100, CacheWrite: 7, Output: 5}, true},
		{KindOpenAI, epChat, `null`, policy.Tokens{}, false},
		{KindOpenAI, epChat, `{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":3}}`, policy.Tokens{}, false},
	}
	for _, tt := range tests {
		got, ok := usageFrom(tt.kind, tt.ep, gjson.Parse(tt.u))
		if got != tt.want || ok != tt.ok {
			t.Errorf("usageFrom(%s) = %+v %v, want %+v %v", tt.u, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		k      Kind
		method string
		path   string
		want   endpoint
	}{
		{KindOpenAI, "POST", "/v1/chat/completions", epChat},
		{KindOpenAI, "POST", "/api/v1/chat/completions/", epChat},
		{KindOpenAI, "POST", "/v1/completions", epCompletions},
		{KindOpenAI, "POST", "/v1/responses", epResponses},
		{KindOpenAI, "POST", "/v1/embeddings", epEmbeddings},
		{KindOpenAI, "GET", "/v1/models", epOther},
		{KindOpenAI, "POST", "/v1/messages", epOther},
		{KindAnthropic, "POST", "/v1/messages", epMessages},
		{KindAnthropic, "POST", "/v1/messages/count_tokens", epOther},
		{KindAnthropic, "POST", "/v1/chat/completions", epOther},
	}
	for _, tt := range tests {
		if got := classify(tt.k, tt.method, tt.path); got != tt.want {
			t.Errorf("classify(%s %s %s) = %v, want %v", tt.k, tt.method, tt.path, got, tt.want)
		}
	}
}

func TestErrorBodyShapes(t *testing.T) {
	o := errorBody(KindOpenAI, 402, "insufficient_quota", "budget_exceeded", "no money")
	if gjson.GetBytes(o, "error.message").String() != "no money" || gjson.GetBytes(o, "error.type").String() != "insufficient_quota" || gjson.GetBytes(o, "error.code").String() != "budget_exceeded" {
		t.Errorf("openai body %s", o)
	}
	a := errorBody(KindAnthropic, 402, "billing_error", "budget_exceeded", "no money")
	if gjson.GetBytes(a, "type").String() != "error" || gjson.GetBytes(a, "error.type").String() != "billing_error" || gjson.GetBytes(a, "error.message").String() != "no money" {
		t.Errorf("anthropic body %s", a)
	}
	if !bytes.Contains(errorBody(KindOpenAI, 404, "invalid_request_error", "", "x"), []byte(`"code":null`)) {
		t.Error("empty code should be null")
	}
}

func TestStreamStateUsage(t *testing.T) {
	type step struct {
		data           string
		drop, terminal bool
	}
	tests := []struct {
		name  string
		st    streamState
		steps []step
		want  policy.Tokens
		final bool
	}{
		{"anthropic counts are cumulative: the last wins", streamState{kind: KindAnthropic, ep: epMessages}, []step{
			{`{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4,"cache_creation_input_tokens":2}}}`, false, false},
			{`{"type":"content_block_delta","delta":{"text":"usage"}}`, false, false},
			{`{"type":"message_delta","usage":{"output_tokens":5}}`, false, false},
			{`{"type":"message_delta","usage":{"output_tokens":9,"input_tokens":12}}`, false, false},
			{`{"type":"message_stop"}`, false, true},
		}, policy.Tokens{Input: 12, Output: 9, CachedRead: 4, CacheWrite: 2}, true},
		{"anthropic without message_delta is not final", streamState{kind: KindAnthropic, ep: epMessages}, []step{
			{`{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}`, false, false},
			{`{"type":"error","error":{"type":"overloaded_error"}}`, false, true},
		}, policy.Tokens{Input: 10, Output: 1}, false},
		{"openai chat, usage chunk stripped", streamState{kind: KindOpenAI, ep: epChat, stripUsage: true}, []step{
			{`{"choices":[{"delta":{"content":"hi"}}],"usage":null}`, false, false},
			{`{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}`, true, false},
			{`[DONE]`, false, true},
		}, policy.Tokens{Input: 7, Output: 3}, true},
		{"openai chat, usage chunk kept when asked", streamState{kind: KindOpenAI, ep: epChat}, []step{
			{`{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}`, false, false},
			{`[DONE]`, false, true},
		}, policy.Tokens{Input: 7, Output: 3}, true},
		{"responses", streamState{kind: KindOpenAI, ep: epResponses}, []step{
			{`{"type":"response.output_text.delta","delta":"usage"}`, false, false},
			{`{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":8,"output_tokens_details":{"reasoning_tokens":6}}}}`, false, true},
		}, policy.Tokens{Input: 5, Output: 2, Reasoning: 6}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st
			for i, s := range tt.steps {
				drop, terminal := st.onEvent(&sse.Event{Data: []byte(s.data)})
				if drop != s.drop || terminal != s.terminal {
					t.Errorf("step %d: drop %v terminal %v, want %v %v", i, drop, terminal, s.drop, s.terminal)
				}
			}
			if st.tokens != tt.want || st.final != tt.final {
				t.Errorf("tokens %+v final %v, want %+v %v", st.tokens, st.final, tt.want, tt.final)
			}
		})
	}
}
