package llmproxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/policy"
)

// Kind is a provider's API dialect.
type Kind string

// Kinds.
const (
	// KindOpenAI is the OpenAI API and the many providers compatible with
	// it: chat completions, completions, responses, embeddings.
	KindOpenAI Kind = "openai"
	// KindAnthropic is the Anthropic Messages API.
	KindAnthropic Kind = "anthropic"
)

// endpoint is a metered API operation.
type endpoint int

const (
	epOther endpoint = iota // priced per request by http: rules
	epChat
	epCompletions
	epResponses
	epEmbeddings
	epMessages
)

// operation names the endpoint in ledger events.
func (e endpoint) operation() string {
	switch e {
	case epChat:
		return "chat.completions"
	case epCompletions:
		return "completions"
	case epResponses:
		return "responses"
	case epEmbeddings:
		return "embeddings"
	case epMessages:
		return "messages"
	}
	return "http"
}

// classify maps a request to its endpoint. Paths are matched by suffix so
// OpenAI-compatible providers with other prefixes (/api/v1, /openai/v1)
// work too.
func classify(k Kind, method, path string) endpoint {
	if method != http.MethodPost {
		return epOther
	}
	path = strings.TrimRight(path, "/")
	switch k {
	case KindAnthropic:
		if strings.HasSuffix(path, "/v1/messages") {
			return epMessages
		}
	default:
		switch {
		case strings.HasSuffix(path, "/chat/completions"):
			return epChat
		case strings.HasSuffix(path, "/completions"):
			return epCompletions
		case strings.HasSuffix(path, "/responses"):
			return epResponses
		case strings.HasSuffix(path, "/embeddings"):
			return epEmbeddings
		}
	}
	return epOther
}

// llmRequest is what the proxy reads from a metered request body.
type llmRequest struct {
	model  string
	stream bool
	// maxOutput is the output bound the request sets itself (0: none),
	// already multiplied by the number of choices it asks for.
	maxOutput int64
	choices   int64
	// wantsUsage is whether an OpenAI chat/completions stream asked for
	// the usage chunk itself.
	wantsUsage bool
}

func parseRequest(ep endpoint, body []byte) llmRequest {
	r := llmRequest{
		model:   gjson.GetBytes(body, "model").String(),
		stream:  gjson.GetBytes(body, "stream").Bool(),
		choices: 1,
	}
	var maxOut gjson.Result
	switch ep {
	case epChat:
		maxOut = gjson.GetBytes(body, "max_completion_tokens")
		if !maxOut.Exists() || maxOut.Type == gjson.Null {
			maxOut = gjson.GetBytes(body, "max_tokens")
		}
		if n := gjson.GetBytes(body, "n").Int(); n > 1 {
			r.choices = n
		}
	case epCompletions:
		maxOut = gjson.GetBytes(body, "max_tokens")
		// best_of completions are generated and billed server-side.
		r.choices = max(1, gjson.GetBytes(body, "n").Int(), gjson.GetBytes(body, "best_of").Int())
	case epResponses:
		maxOut = gjson.GetBytes(body, "max_output_tokens")
	case epMessages:
		maxOut = gjson.GetBytes(body, "max_tokens")
	}
	if maxOut.Type == gjson.Number && maxOut.Int() > 0 {
		r.maxOutput = maxOut.Int()
	}
	if ep == epChat || ep == epCompletions {
		r.wantsUsage = gjson.GetBytes(body, "stream_options.include_usage").Bool()
	}
	return r
}

// injectIncludeUsage returns body with stream_options.include_usage set to
// true, editing the bytes in place of a re-encode so every other field
// reaches the provider exactly as the client wrote it.
func injectIncludeUsage(body []byte) []byte {
	so := gjson.GetBytes(body, "stream_options")
	switch {
	case !so.Exists() || so.Type == gjson.Null:
		if so.Exists() {
			// "stream_options": null → replace the null.
			return splice(body, so.Index, len(so.Raw), []byte(`{"include_usage":true}`))
		}
		end := bytes.LastIndexByte(body, '}')
		if end < 0 {
			return body
		}
		return splice(body, end, 0, []byte(`,"stream_options":{"include_usage":true}`))
	case so.IsObject():
		iu := gjson.Get(so.Raw, "include_usage")
		if iu.Exists() {
			return splice(body, so.Index+iu.Index, len(iu.Raw), []byte("true"))
		}
		open := so.Index + strings.IndexByte(so.Raw, '{')
		insert := []byte(`"include_usage":true`)
		if strings.TrimSpace(so.Raw[strings.IndexByte(so.Raw, '{')+1:]) != "}" {
			insert = append(insert, ',')
		}
		return splice(body, open+1, 0, insert)
	}
	return body
}

func splice(b []byte, at, remove int, insert []byte) []byte {
	out := make([]byte, 0, len(b)-remove+len(insert))
	out = append(out, b[:at]...)
	out = append(out, insert...)
	return append(out, b[at+remove:]...)
}

// usageFrom converts a provider usage object to Caracal's token counts.
//
// Caracal's Tokens are disjoint: Input excludes cached reads and cache
// writes, Output excludes reasoning. OpenAI reports cached tokens inside
// prompt/input tokens and reasoning tokens inside completion/output tokens,
// so they are subtracted; Anthropic reports input, cache reads and cache
// writes separately and does not split thinking from output.
func usageFrom(k Kind, ep endpoint, u gjson.Result) (policy.Tokens, bool) {
	if !u.IsObject() {
		return policy.Tokens{}, false
	}
	var t policy.Tokens
	switch {
	case k == KindAnthropic:
		t.Input = u.Get("input_tokens").Int()
		t.CachedRead = u.Get("cache_read_input_tokens").Int()
		t.CacheWrite = u.Get("cache_creation_input_tokens").Int()
		t.Output = u.Get("output_tokens").Int()
	case ep == epResponses:
		in, cached := u.Get("input_tokens").Int(), u.Get("input_tokens_details.cached_tokens").Int()
		out, reasoning := u.Get("output_tokens").Int(), u.Get("output_tokens_details.reasoning_tokens").Int()
		t = policy.Tokens{Input: in - cached, CachedRead: cached, Output: out - reasoning, Reasoning: reasoning}
	default: // chat, completions, embeddings
		in, cached := u.Get("prompt_tokens").Int(), u.Get("prompt_tokens_details.cached_tokens").Int()
		out, reasoning := u.Get("completion_tokens").Int(), u.Get("completion_tokens_details.reasoning_tokens").Int()
		t = policy.Tokens{Input: in - cached, CachedRead: cached, Output: out - reasoning, Reasoning: reasoning}
	}
	if t.Input < 0 || t.CachedRead < 0 || t.CacheWrite < 0 || t.Output < 0 || t.Reasoning < 0 {
		return policy.Tokens{}, false
	}
	return t, true
}

// errorBody is a refusal in the provider's own error shape, so official
// SDKs raise their usual error with a readable message.
func errorBody(k Kind, status int, errType, code, message string) []byte {
	var v any
	if k == KindAnthropic {
		v = map[string]any{"type": "error", "error": map[string]any{"type": errType, "message": message}}
	} else {
		var c any
		if code != "" {
			c = code
		}
		v = map[string]any{"error": map[string]any{"message": message, "type": errType, "param": nil, "code": c}}
	}
	b, _ := json.Marshal(v)
	return b
}

// errorType picks the provider's error type for an HTTP status.
func errorType(k Kind, status int, code policy.Code) string {
	if k == KindAnthropic {
		switch {
		case status == http.StatusPaymentRequired:
			return "billing_error"
		case status == http.StatusUnauthorized:
			return "authentication_error"
		case status == http.StatusForbidden:
			return "permission_error"
		case status == http.StatusNotFound:
			return "not_found_error"
		case status == http.StatusRequestEntityTooLarge:
			return "request_too_large"
		case status == http.StatusServiceUnavailable:
			return "overloaded_error"
		case status == http.StatusGatewayTimeout || status >= 500:
			return "api_error"
		}
		return "invalid_request_error"
	}
	switch {
	case status == http.StatusPaymentRequired && code == policy.CodeBudgetExceeded:
		return "insufficient_quota"
	case status == http.StatusPaymentRequired && (code == policy.CodeNotAllowed || code == policy.CodeAgentSuspended):
		return "permission_error"
	case status == http.StatusUnauthorized:
		return "invalid_request_error"
	case status == http.StatusNotFound:
		return "invalid_request_error"
	case status >= 500:
		return "server_error"
	case status == http.StatusPaymentRequired:
		return "caracal_refused"
	}
	return "invalid_request_error"
}

// billable is the token counts a rule bills: a class the rule sets no rate
// for is billed at the rate of the class it is part of in the provider's
// own accounting — reasoning at the output rate, cached reads and cache
// writes at the input rate — so an incomplete rule never makes tokens free.
func billable(r policy.PriceRule, t policy.Tokens) policy.Tokens {
	if r.ReasoningPerMillion == 0 {
		t.Output, t.Reasoning = t.Output+t.Reasoning, 0
	}
	if r.CachedInputPerMillion == 0 {
		t.Input, t.CachedRead = t.Input+t.CachedRead, 0
	}
	if r.CacheWritePerMillion == 0 {
		t.Input, t.CacheWrite = t.Input+t.CacheWrite, 0
	}
	return t
}
