package llmproxy

import (
	"bytes"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/sse"
	"github.com/caracal-dev/caracal/policy"
)

// streamState follows one streamed response's events to learn its usage.
type streamState struct {
	kind Kind
	ep   endpoint
	// stripUsage drops the usage-only chunk of an OpenAI chat stream whose
	// client did not ask for it (the proxy asked on its behalf).
	stripUsage bool
	tokens     policy.Tokens
	// final is true once the provider's closing usage report was seen.
	final bool
}

var (
	dataDone   = []byte("[DONE]")
	usageField = []byte(`"usage"`)
)

// onEvent reads one event. drop says the event must not reach the client;
// terminal says it is the stream's last meaningful event, so the call can
// be settled before the client sees the end of the stream.
func (s *streamState) onEvent(ev *sse.Event) (drop, terminal bool) {
	data := ev.Data
	switch {
	case s.kind == KindAnthropic:
		if !bytes.Contains(data, []byte(`"type"`)) {
			return false, false
		}
		switch gjson.GetBytes(data, "type").String() {
		case "message_start":
			if t, ok := usageFrom(s.kind, s.ep, gjson.GetBytes(data, "message.usage")); ok {
				s.tokens = t
			}
		case "message_delta":
			// Counts are cumulative: each field present replaces the last.
			u := gjson.GetBytes(data, "usage")
			if u.IsObject() {
				for field, dst := range map[string]*int64{
					"input_tokens":                &s.tokens.Input,
					"output_tokens":               &s.tokens.Output,
					"cache_read_input_tokens":     &s.tokens.CachedRead,
					"cache_creation_input_tokens": &s.tokens.CacheWrite,
				} {
					if v := u.Get(field); v.Type == gjson.Number && v.Int() >= 0 {
						*dst = v.Int()
					}
				}
				s.final = true
			}
		case "message_stop", "error":
			return false, true
		}
	case s.ep == epResponses:
		if !bytes.Contains(data, []byte(`"type"`)) {
			return false, false
		}
		switch gjson.GetBytes(data, "type").String() {
		case "response.completed", "response.incomplete", "response.failed":
			if t, ok := usageFrom(s.kind, s.ep, gjson.GetBytes(data, "response.usage")); ok {
				s.tokens, s.final = t, true
			}
			return false, true
		case "error":
			return false, true
		}
	default: // chat and completions
		if bytes.Equal(bytes.TrimSpace(data), dataDone) {
			return false, true
		}
		if !bytes.Contains(data, usageField) {
			return false, false
		}
		if t, ok := usageFrom(s.kind, s.ep, gjson.GetBytes(data, "usage")); ok {
			s.tokens, s.final = t, true
			if s.stripUsage {
				ch := gjson.GetBytes(data, "choices")
				return !ch.IsArray() || len(ch.Array()) == 0, false
			}
		}
	}
	return false, false
}
