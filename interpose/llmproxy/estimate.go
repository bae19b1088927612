package llmproxy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// ModelLimit is how much one request to a model can consume and produce.
type ModelLimit struct {
	// Context is the model's context window in tokens: no request's input
	// can exceed it. Zero means unknown.
	Context int64 `json:"context" yaml:"context"`
	// Output is the most output tokens (reasoning included) one response
	// can hold; it is the reservation's output bound when the request
	// sets no max_tokens / max_completion_tokens / max_output_tokens.
	Output int64 `json:"output" yaml:"output"`
}

// DefaultModelLimits returns the built-in limits by model-name glob, as the
// providers documented them for their current models (checked 2025-10).
// Options.ModelLimits extends and overrides them; a model matching no
// pattern gets Options.FallbackLimit.
func DefaultModelLimits() map[string]ModelLimit {
	return map[string]ModelLimit{
		// OpenAI
		"gpt-4o*":             {Context: 128_000, Output: 16_384},
		"gpt-4o-mini*":        {Context: 128_000, Output: 16_384},
		"chatgpt-4o*":         {Context: 128_000, Output: 16_384},
		"gpt-4-turbo*":        {Context: 128_000, Output: 4_096},
		"gpt-3.5-turbo*":      {Context: 16_385, Output: 4_096},
		"gpt-4.1*":            {Context: 1_047_576, Output: 32_768},
		"gpt-5*":              {Context: 400_000, Output: 128_000},
		"o1*":                 {Context: 200_000, Output: 100_000},
		"o3*":                 {Context: 200_000, Output: 100_000},
		"o4-mini*":            {Context: 200_000, Output: 100_000},
		"text-embedding-3-*":  {Context: 8_192, Output: 0},
		"text-embedding-ada*": {Context: 8_192, Output: 0},
		// Anthropic (max_tokens is required by the Messages API, so Output
		// only matters for requests that omit it and are refused upstream).
		"claude-3-5-haiku*":  {Context: 200_000, Output: 8_192},
		"claude-3-7-sonnet*": {Context: 200_000, Output: 128_000},
		"claude-sonnet-4*":   {Context: 1_000_000, Output: 64_000},
		"claude-opus-4*":     {Context: 200_000, Output: 32_000},
		"claude-haiku-4*":    {Context: 200_000, Output: 64_000},
	}
}

// defaultFallbackLimit bounds models with no known limit: generous, so an
// unknown model is over-reserved rather than under-reserved.
var defaultFallbackLimit = ModelLimit{Context: 1_000_000, Output: 128_000}

// limitTable finds the most specific limit for a model name.
type limitTable struct {
	patterns []string
	limits   []ModelLimit
	fallback ModelLimit
}

func newLimitTable(base, extra map[string]ModelLimit, fallback ModelLimit) *limitTable {
	all := map[string]ModelLimit{}
	for k, v := range base {
		all[k] = v
	}
	for k, v := range extra {
		all[k] = v
	}
	t := &limitTable{fallback: fallback}
	for k, v := range all {
		t.patterns = append(t.patterns, k)
		t.limits = append(t.limits, v)
	}
	return t
}

// lookup picks the limit by policy.BestMatch, the order price rules are
// chosen by, so a model's limit and its price come from patterns ranked
// alike. (A pattern of stars only, such as a catch-all "*", still counts.)
func (t *limitTable) lookup(model string) ModelLimit {
	best, ok := policy.BestMatch(t.patterns, model)
	if !ok {
		return t.fallback
	}
	return t.limits[best]
}

// estimateOverhead is added to every input estimate for text the provider
// adds on its side: chat-format tokens and tool-use system prompts (which
// Anthropic documents at a few hundred tokens).
const estimateOverhead = 1024

// imageTypes are content-part types whose bytes are an image (inline base64
// or a URL) that the provider bills by its pixels, not by its bytes.
var imageTypes = map[string]bool{"image_url": true, "input_image": true, "image": true}

// estimateInput is an upper bound on a request's input tokens.
//
// Byte-level BPE tokenizers (OpenAI's cl100k/o200k, Anthropic's) never
// produce more tokens than the UTF-8 bytes they encode, and a JSON body is
// never shorter than the text it carries (escapes only lengthen it), so the
// body's length in bytes bounds the tokens of its text. Images are the
// exception — a short URL can cost thousands of tokens, and a base64 image's
// bytes far exceed its cost — so each image part counts as imageTokens
// instead of its bytes. Input the request only refers to (a previous
// response, a stored conversation or prompt, a file by id) cannot be
// measured, so such requests are bounded by the model's context window.
// Every estimate is capped at the context window when it is known.
func estimateInput(body []byte, limit ModelLimit, imageTokens int64) int64 {
	if refersToServerState(body) && limit.Context > 0 {
		return limit.Context
	}
	est := int64(len(body))
	if bytes.Contains(body, []byte("image")) {
		var images, imageBytes int64
		walkImages(gjson.ParseBytes(body), &images, &imageBytes)
		est += images*imageTokens - imageBytes
	}
	est += estimateOverhead
	if limit.Context > 0 && est > limit.Context {
		est = limit.Context
	}
	return est
}

// refersToServerState reports whether the request brings in input that its
// body does not carry: a previous response, a stored conversation or
// prompt, a file by id or URL, a document fetched from a URL, remote MCP
// servers, or a hosted tool (web search, file search, …) whose internal
// turns add input tokens. Only tools of type "function" or "custom", or
// with no type (Anthropic's client tools), run on the agent's side.
func refersToServerState(body []byte) bool {
	for _, k := range []string{"previous_response_id", "conversation", "prompt.id", "mcp_servers"} {
		if v := gjson.GetBytes(body, k); v.Exists() && v.Type != gjson.Null {
			return true
		}
	}
	for _, k := range []string{`"file_id"`, `"file_url"`, `"container_upload"`} {
		if bytes.Contains(body, []byte(k)) {
			return true
		}
	}
	hosted := false
	gjson.GetBytes(body, "tools").ForEach(func(_, t gjson.Result) bool {
		switch t.Get("type").String() {
		case "", "function", "custom":
			return true
		}
		hosted = true
		return false
	})
	return hosted || fetchesDocument(gjson.ParseBytes(body))
}

// fetchesDocument reports whether r holds a document part whose source is
// not inline (Anthropic's {"type":"document","source":{"type":"url",…}}).
func fetchesDocument(r gjson.Result) bool {
	found := false
	switch {
	case r.IsObject():
		if r.Get("type").String() == "document" {
			switch r.Get("source.type").String() {
			case "base64", "text", "content":
			default:
				return true
			}
		}
		r.ForEach(func(_, v gjson.Result) bool {
			found = fetchesDocument(v)
			return !found
		})
	case r.IsArray():
		r.ForEach(func(_, v gjson.Result) bool {
			found = fetchesDocument(v)
			return !found
		})
	}
	return found
}

func walkImages(r gjson.Result, images, imageBytes *int64) {
	switch {
	case r.IsObject():
		if imageTypes[r.Get("type").String()] {
			*images++
			*imageBytes += int64(len(r.Raw))
			return
		}
		r.ForEach(func(_, v gjson.Result) bool {
			walkImages(v, images, imageBytes)
			return true
		})
	case r.IsArray():
		r.ForEach(func(_, v gjson.Result) bool {
			walkImages(v, images, imageBytes)
			return true
		})
	}
}

// worstCase prices in input and out output tokens at the most expensive
// rate each could be billed at: input at the highest of the input,
// cache-write and cached-read rates, output at the higher of the output and
// reasoning rates, plus the rule's per-call price. It rounds up, so it is
// never below what policy.Cost (which rounds half up) charges for any usage
// within the bounds.
func worstCase(r policy.PriceRule, in, out int64) (money.Amount, error) {
	inRate := max(r.InputPerMillion, r.CacheWritePerMillion, r.CachedInputPerMillion)
	outRate := max(r.OutputPerMillion, r.ReasoningPerMillion)
	total, err := func() (money.Amount, error) {
		var sum money.Exact
		if err := sum.AddProduct(int64(inRate), in); err != nil {
			return 0, err
		}
		if err := sum.AddProduct(int64(outRate), out); err != nil {
			return 0, err
		}
		variable, err := sum.Quo(1_000_000, money.RoundUp)
		if err != nil {
			return 0, err
		}
		return r.PerCall.Add(variable)
	}()
	if err != nil {
		return 0, fmt.Errorf("worst-case cost of %d input and %d output tokens: %w", in, out, err)
	}
	return total, nil
}

// explainWorstCase says what worstCase assumed for a refusal's reason:
// the output bound (the request's own cap, or the model's limit when it
// sets none), the input bound and the rates, and how to reserve less.
func explainWorstCase(r policy.PriceRule, ep endpoint, in, out int64, capped bool) *interpose.WorstCase {
	field := "max_tokens"
	switch ep {
	case epChat:
		field = "max_completion_tokens"
	case epResponses:
		field = "max_output_tokens"
	}
	cur := r.Currency
	if cur == "" {
		cur = money.DefaultCurrency
	}
	inRate := max(r.InputPerMillion, r.CacheWritePerMillion, r.CachedInputPerMillion)
	outRate := max(r.OutputPerMillion, r.ReasoningPerMillion)
	basis := fmt.Sprintf("%s output tokens at %s %s per million", groupDigits(out), outRate, cur)
	hint := "lower " + field + " to reserve less"
	if !capped {
		basis = field + " unset: " + basis
		hint = "set " + field + " to reserve less"
	}
	if ep == epEmbeddings {
		basis, hint = "", "send less input to reserve less"
	} else {
		basis += ", plus "
	}
	basis += fmt.Sprintf("up to %s input tokens at %s %s per million", groupDigits(in), inRate, cur)
	return &interpose.WorstCase{Basis: basis, Hint: hint}
}

// groupDigits writes n with thousands separators: 128000 → "128,000".
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
