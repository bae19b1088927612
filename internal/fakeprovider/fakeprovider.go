// Package fakeprovider is a deterministic stand-in for the OpenAI and
// Anthropic HTTP APIs, for tests and benchmarks: chat completions,
// responses and embeddings in OpenAI's shape, messages in Anthropic's,
// streamed and not, with usage computed from the request by fixed rules
// and failure modes chosen per request with headers. It records the
// credentials it was sent, so tests can prove which keys reached it.
//
// Usage rules: input tokens are 10 + len(body)/8; output tokens are the
// request's max_tokens (or max_completion_tokens / max_output_tokens) when
// set and smaller than the output length, which is Options.OutputTokens or
// the Fake-Output-Tokens header. Fake-Cached-Tokens, Fake-Cache-Write-Tokens
// (Anthropic) and Fake-Reasoning-Tokens (OpenAI) add those counts.
//
// Modes (header Fake-Mode): "error500" answers 500 in the provider's error
// shape; "hang" waits Fake-Delay (default one hour) or until the client
// leaves before answering; "cut" aborts a stream half way; "nousage" omits
// usage; "overreport" reports Fake-Output-Tokens (or Options.OutputTokens)
// as output usage even above the request's max_tokens, as a misbehaving
// provider might, while the text it sends stays within the bound;
// "echo-key" answers 401 quoting the credential it was sent. Fake-Delay delays the response headers, Fake-Chunk-Delay each
// stream event.
package fakeprovider

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Options configure a Server.
type Options struct {
	// OpenAIKey, if set, is required as `Authorization: Bearer` on OpenAI
	// routes; AnthropicKey as `x-api-key` on /v1/messages.
	OpenAIKey    string
	AnthropicKey string
	// OutputTokens is the length of every answer; default 12.
	OutputTokens int
	// ChunkDelay is the default pause between stream events.
	ChunkDelay time.Duration
	// Record keeps the credentials of every request; default off so
	// benchmarks do not grow memory.
	Record bool
}

// Seen is one request as the provider received it.
type Seen struct {
	Method        string `json:"method"`
	Path          string `json:"path"`
	Authorization string `json:"authorization"`
	APIKey        string `json:"x_api_key"`
}

// Server is the fake provider; it is an http.Handler.
type Server struct {
	opts Options
	mu   sync.Mutex
	seen []Seen
}

// New returns a Server.
func New(o Options) *Server {
	if o.OutputTokens == 0 {
		o.OutputTokens = 12
	}
	return &Server{opts: o}
}

// Seen returns the requests received so far.
func (s *Server) Seen() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

// InputTokens is the input usage the server reports for a request body.
func InputTokens(body []byte) int64 { return 10 + int64(len(body))/8 }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Record {
		s.mu.Lock()
		s.seen = append(s.seen, Seen{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), APIKey: r.Header.Get("X-Api-Key")})
		s.mu.Unlock()
	}
	if r.URL.Path == "/_fake/seen" {
		writeJSON(w, http.StatusOK, s.Seen())
		return
	}
	anthropic := strings.HasSuffix(r.URL.Path, "/v1/messages")
	if anthropic {
		if s.opts.AnthropicKey != "" && r.Header.Get("X-Api-Key") != s.opts.AnthropicKey {
			anthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
			return
		}
	} else if s.opts.OpenAIKey != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.OpenAIKey {
		openAIError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided")
		return
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/models") {
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{map[string]any{"id": "gpt-4o", "object": "model", "owned_by": "fake"}}})
		return
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		body = b
	}
	x := s.exchange(r, body)
	if x.delay > 0 || x.mode == "hang" {
		d := x.delay
		if d == 0 {
			d = time.Hour
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if x.mode == "echo-key" {
		// Some providers quote the credential they were sent.
		openAIError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided: "+r.Header.Get("Authorization")+r.Header.Get("X-Api-Key"))
		return
	}
	if x.mode == "error500" {
		if anthropic {
			anthropicError(w, http.StatusInternalServerError, "api_error", "fake internal error")
		} else {
			openAIError(w, http.StatusInternalServerError, "server_error", "fake internal error")
		}
		return
	}
	if r.Method != http.MethodPost || !gjson.ValidBytes(body) {
		if anthropic {
			anthropicError(w, http.StatusBadRequest, "invalid_request_error", "bad request")
		} else {
			openAIError(w, http.StatusNotFound, "invalid_request_error", "unknown route or bad body")
		}
		return
	}
	switch p := r.URL.Path; {
	case anthropic:
		s.messages(w, x)
	case strings.HasSuffix(p, "/chat/completions"):
		s.chat(w, x)
	case strings.HasSuffix(p, "/responses"):
		s.responses(w, x)
	case strings.HasSuffix(p, "/embeddings"):
		s.embeddings(w, x)
	default:
		openAIError(w, http.StatusNotFound, "invalid_request_error", "unknown route "+p)
	}
}

// exchange is one request's parameters.
type exchange struct {
	body                                    []byte
	model                                   string
	stream                                  bool
	mode                                    string
	delay, chunkDelay                       time.Duration
	input, output, cached, write, reasoning int64
	// billed is the output usage reported: output, or in mode
	// "overreport" the length before max_tokens bounded it.
	billed       int64
	includeUsage bool
	// done ends when the client hangs up: a slow stream stops waiting.
	done <-chan struct{}
}

func (s *Server) exchange(r *http.Request, body []byte) exchange {
	x := exchange{
		body:         body,
		model:        gjson.GetBytes(body, "model").String(),
		stream:       gjson.GetBytes(body, "stream").Bool(),
		mode:         r.Header.Get("Fake-Mode"),
		chunkDelay:   s.opts.ChunkDelay,
		input:        InputTokens(body),
		output:       int64(s.opts.OutputTokens),
		includeUsage: gjson.GetBytes(body, "stream_options.include_usage").Bool(),
		done:         r.Context().Done(),
	}
	if d, err := time.ParseDuration(r.Header.Get("Fake-Delay")); err == nil {
		x.delay = d
	}
	if d, err := time.ParseDuration(r.Header.Get("Fake-Chunk-Delay")); err == nil {
		x.chunkDelay = d
	}
	num := func(h string) int64 { n, _ := strconv.ParseInt(r.Header.Get(h), 10, 64); return n }
	if n := num("Fake-Output-Tokens"); n > 0 {
		x.output = n
	}
	x.cached, x.write, x.reasoning = num("Fake-Cached-Tokens"), num("Fake-Cache-Write-Tokens"), num("Fake-Reasoning-Tokens")
	unbounded := x.output
	for _, k := range []string{"max_completion_tokens", "max_tokens", "max_output_tokens"} {
		if m := gjson.GetBytes(body, k).Int(); m > 0 && m < x.output+x.reasoning {
			x.output = max(m-x.reasoning, 1)
			break
		}
	}
	x.billed = x.output
	if x.mode == "overreport" {
		x.billed = unbounded
	}
	return x
}

func (x exchange) words() []string {
	w := make([]string, x.output)
	for i := range w {
		w[i] = fmt.Sprintf("w%d ", i)
	}
	return w
}

// openAIUsage is chat/completions usage: cached tokens are part of
// prompt_tokens and reasoning tokens part of completion_tokens.
func (x exchange) openAIUsage() map[string]any {
	in, out := x.input+x.cached, x.billed+x.reasoning
	return map[string]any{
		"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out,
		"prompt_tokens_details":     map[string]any{"cached_tokens": x.cached},
		"completion_tokens_details": map[string]any{"reasoning_tokens": x.reasoning},
	}
}

func (x exchange) responsesUsage() map[string]any {
	in, out := x.input+x.cached, x.billed+x.reasoning
	return map[string]any{
		"input_tokens": in, "output_tokens": out, "total_tokens": in + out,
		"input_tokens_details":  map[string]any{"cached_tokens": x.cached},
		"output_tokens_details": map[string]any{"reasoning_tokens": x.reasoning},
	}
}

func (x exchange) anthropicUsage(output int64) map[string]any {
	return map[string]any{
		"input_tokens": x.input, "output_tokens": output,
		"cache_read_input_tokens": x.cached, "cache_creation_input_tokens": x.write,
	}
}

func (s *Server) chat(w http.ResponseWriter, x exchange) {
	id, created := "chatcmpl-fake", time.Now().Unix()
	words := x.words()
	if !x.stream {
		msg := map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": x.model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": strings.Join(words, "")}, "finish_reason": "stop"}},
		}
		if x.mode != "nousage" {
			msg["usage"] = x.openAIUsage()
		}
		writeJSON(w, http.StatusOK, msg)
		return
	}
	sw := newStream(w, x)
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": x.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		if x.includeUsage {
			c["usage"] = nil
		}
		return c
	}
	sw.data(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	for i, word := range words {
		if x.mode == "cut" && i == len(words)/2 {
			sw.cut()
		}
		sw.data(chunk(map[string]any{"content": word}, nil))
	}
	sw.data(chunk(map[string]any{}, "stop"))
	if x.includeUsage && x.mode != "nousage" {
		sw.data(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": x.model, "choices": []any{}, "usage": x.openAIUsage()})
	}
	sw.raw("data: [DONE]\n\n")
}

func (s *Server) responses(w http.ResponseWriter, x exchange) {
	words := x.words()
	resp := func(status string, text string, usage bool) map[string]any {
		r := map[string]any{"id": "resp_fake", "object": "response", "created_at": time.Now().Unix(), "status": status, "model": x.model, "output": []any{}}
		if text != "" {
			r["output"] = []any{map[string]any{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
				"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}}
		}
		if usage && x.mode != "nousage" {
			r["usage"] = x.responsesUsage()
		} else {
			r["usage"] = nil
		}
		return r
	}
	text := strings.Join(words, "")
	if !x.stream {
		writeJSON(w, http.StatusOK, resp("completed", text, true))
		return
	}
	sw := newStream(w, x)
	seq := 0
	ev := func(typ string, v map[string]any) {
		v["type"], v["sequence_number"] = typ, seq
		seq++
		sw.event(typ, v)
	}
	ev("response.created", map[string]any{"response": resp("in_progress", "", false)})
	for i, word := range words {
		if x.mode == "cut" && i == len(words)/2 {
			sw.cut()
		}
		ev("response.output_text.delta", map[string]any{"item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": word})
	}
	ev("response.completed", map[string]any{"response": resp("completed", text, true)})
}

func (s *Server) embeddings(w http.ResponseWriter, x exchange) {
	n := 1
	if in := gjson.GetBytes(x.body, "input"); in.IsArray() {
		n = len(in.Array())
	}
	data := make([]any, n)
	for i := range data {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float64{0.125, -0.5, 0.25}}
	}
	msg := map[string]any{"object": "list", "data": data, "model": x.model}
	if x.mode != "nousage" {
		msg["usage"] = map[string]any{"prompt_tokens": x.input, "total_tokens": x.input}
	}
	writeJSON(w, http.StatusOK, msg)
}

func (s *Server) messages(w http.ResponseWriter, x exchange) {
	words := x.words()
	message := func(content []any, usage map[string]any, stop any) map[string]any {
		return map[string]any{"id": "msg_fake", "type": "message", "role": "assistant", "model": x.model,
			"content": content, "stop_reason": stop, "stop_sequence": nil, "usage": usage}
	}
	if !x.stream {
		m := message([]any{map[string]any{"type": "text", "text": strings.Join(words, "")}}, x.anthropicUsage(x.billed), "end_turn")
		if x.mode == "nousage" {
			delete(m, "usage")
		}
		writeJSON(w, http.StatusOK, m)
		return
	}
	sw := newStream(w, x)
	sw.event("message_start", map[string]any{"type": "message_start", "message": message([]any{}, x.anthropicUsage(1), nil)})
	sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	sw.event("ping", map[string]any{"type": "ping"})
	for i, word := range words {
		if x.mode == "cut" && i == len(words)/2 {
			sw.cut()
		}
		sw.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": word}})
	}
	sw.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	if x.mode != "nousage" {
		sw.event("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]any{"output_tokens": x.billed}})
	}
	sw.event("message_stop", map[string]any{"type": "message_stop"})
}

type stream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	delay time.Duration
	done  <-chan struct{}
	n     int
}

func newStream(w http.ResponseWriter, x exchange) *stream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	s := &stream{w: w, rc: http.NewResponseController(w), delay: x.chunkDelay, done: x.done}
	_ = s.rc.Flush()
	return s
}

func (s *stream) raw(b string) {
	if s.n > 0 && s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-s.done:
		}
	}
	s.n++
	_, _ = s.w.Write([]byte(b))
	_ = s.rc.Flush()
}

func (s *stream) data(v any) {
	b, _ := json.Marshal(v)
	s.raw("data: " + string(b) + "\n\n")
}

func (s *stream) event(name string, v any) {
	b, _ := json.Marshal(v)
	s.raw("event: " + name + "\ndata: " + string(b) + "\n\n")
}

// cut drops the connection mid-stream, as a crashed provider would.
func (s *stream) cut() { panic(http.ErrAbortHandler) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func openAIError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
}

func anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
}
