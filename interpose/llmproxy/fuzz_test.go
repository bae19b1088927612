package llmproxy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/caracal-dev/caracal/internal/sse"
	"github.com/caracal-dev/caracal/policy"
)

// chunks cuts data into pieces whose lengths come from cuts, so one input
// is also read the way a network delivers it.
func chunks(data, cuts []byte) [][]byte {
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(cuts) > 0 {
			n = min(n, int(cuts[i%len(cuts)]%32)+1)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// splitEvents runs the splitter over the pieces the way sseBody does and
// returns the complete events and the unterminated remainder.
func splitEvents(pieces [][]byte) (events [][]byte, rest []byte) {
	var s sse.Splitter
	for _, p := range pieces {
		for len(p) > 0 {
			i := s.Scan(p)
			if i < 0 {
				rest = append(rest, p...)
				break
			}
			events = append(events, append(rest, p[:i]...))
			rest = nil
			p = p[i:]
		}
	}
	return events, rest
}

// refParseEvent is the SSE specification's event parsing written plainly:
// normalise line ends, split, apply the event and data fields.
func refParseEvent(raw []byte) (name string, data []byte) {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		if line == "" || line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = value
		case "data":
			lines = append(lines, value)
		}
	}
	return name, []byte(strings.Join(lines, "\n"))
}

// refBlankLines counts the blank lines in a stream (each ends one event).
func refBlankLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	n := 0
	for i := range len(s) {
		if s[i] == '\n' && (i == 0 || s[i-1] == '\n') {
			n++
		}
	}
	return n
}

// FuzzSSESplitter checks that the splitter hands out exactly its input,
// cut at the same places however the input is chunked, one event per blank
// line, and that sse.Parse agrees with the specification's parsing.
func FuzzSSESplitter(f *testing.F) {
	for _, s := range []string{
		"data: {\"a\":1}\n\n", "event: x\r\ndata: 1\r\ndata: 2\r\n\r\n", "data: a\r\rdata: b\r\r",
		": comment\n\ndata:no space\n\n", "\n\n\n", "data: [DONE]\n\n", "data: x\r\n\r", "data",
		"event: message_delta\ndata: {\"type\":\"message_delta\"}\n\n",
	} {
		f.Add([]byte(s), []byte{0, 3, 1})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		whole, wholeRest := splitEvents([][]byte{data})
		events, rest := splitEvents(chunks(data, cuts))
		if got := bytes.Join(append(events, rest), nil); !bytes.Equal(got, data) {
			t.Fatalf("splitter output %q differs from its input %q", got, data)
		}
		if len(events) != len(whole) || !bytes.Equal(rest, wholeRest) {
			t.Fatalf("chunked: %d events, rest %q; whole: %d events, rest %q", len(events), rest, len(whole), wholeRest)
		}
		for i := range events {
			if !bytes.Equal(events[i], whole[i]) {
				t.Fatalf("event %d is %q chunked, %q whole", i, events[i], whole[i])
			}
		}
		if want := refBlankLines(data); len(events) != want {
			t.Fatalf("%d events for %d blank lines in %q", len(events), want, data)
		}
		var ev sse.Event
		for _, raw := range append(events, rest) {
			sse.Parse(raw, &ev)
			name, d := refParseEvent(raw)
			if ev.Event != name || !bytes.Equal(ev.Data, d) {
				t.Fatalf("sse.Parse(%q) = %q, %q; want %q, %q", raw, ev.Event, ev.Data, name, d)
			}
		}
	})
}

// FuzzFieldScanner compares the streaming usage scanner with gjson on
// valid JSON: it must capture the first top-level "usage" value exactly,
// however the document is chunked, and never hold more than its bound.
func FuzzFieldScanner(f *testing.F) {
	for _, s := range []string{
		`{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"usage":null}`, `{"data":[{"usage":1}],"usage" : 7 }`, `{"a":"\"usage\":","usage":"}"}`,
		`{"usage":1,"usage":2}`, `[{"usage":1}]`, `{"u\u0073age":1}`, `{"usagex":1,"usage":[1,{"a":"]"}]}`,
		`{"nested":{"usage":5}}`, `{"usage":{"a":"\\"}}`, `"usage"`, `{}`,
	} {
		f.Add([]byte(s), []byte{5, 1}, uint16(64))
	}
	f.Fuzz(func(t *testing.T, doc, cuts []byte, max uint16) {
		big := newFieldScanner("usage", 1<<20)
		small := newFieldScanner("usage", int(max))
		for _, p := range chunks(doc, cuts) {
			big.Write(p)
			small.Write(p)
		}
		if v := small.Value(); len(v) > int(max) {
			t.Fatalf("scanner bounded to %d bytes captured %d", max, len(v))
		}
		if !json.Valid(doc) || len(doc) >= 1<<20 {
			return
		}
		var want []byte
		r := gjson.ParseBytes(doc)
		if r.IsObject() {
			skip := false
			r.ForEach(func(k, v gjson.Result) bool {
				if k.Str != "usage" {
					return true
				}
				// The scanner compares raw key bytes: an escaped spelling
				// of "usage" is not recognised (providers never write one).
				skip = k.Raw != `"usage"`
				want = []byte(v.Raw)
				return false
			})
			if skip {
				return
			}
		}
		if got := big.Value(); !bytes.Equal(got, want) {
			t.Fatalf("scanner found %q, gjson %q in %s", got, want, doc)
		}
		if got := small.Value(); got != nil && !bytes.Equal(got, want) {
			t.Fatalf("bounded scanner found %q, gjson %q in %s", got, want, doc)
		}
	})
}

// FuzzStreamUsage drives whole streams through the splitter, sse.Parse and
// streamState for every dialect: token counts must never go negative (a
// negative count would lower a charge), and only a proxy-requested usage
// chunk may be dropped.
func FuzzStreamUsage(f *testing.F) {
	for _, s := range []string{
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}\n\ndata: [DONE]\n\n",
		"data: {\"usage\":{\"prompt_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":20}}}\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-3}}\n\n",
		"data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":9}}}}\n\n",
	} {
		f.Add([]byte(s), uint8(0), true)
		f.Add([]byte(s), uint8(3), false)
		f.Add([]byte(s), uint8(8), false)
	}
	eps := []endpoint{epChat, epCompletions, epResponses, epEmbeddings, epMessages}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8, strip bool) {
		st := streamState{kind: KindOpenAI, ep: eps[int(sel)%len(eps)], stripUsage: strip}
		if sel&8 != 0 {
			st.kind = KindAnthropic
		}
		events, rest := splitEvents([][]byte{data})
		var ev sse.Event
		for _, raw := range append(events, rest) {
			sse.Parse(raw, &ev)
			drop, _ := st.onEvent(&ev)
			if drop && !strip {
				t.Fatalf("event %q dropped without stripUsage", raw)
			}
			tk := st.tokens
			if tk.Input < 0 || tk.Output < 0 || tk.CachedRead < 0 || tk.CacheWrite < 0 || tk.Reasoning < 0 {
				t.Fatalf("negative tokens %+v after %q", tk, raw)
			}
		}
	})
}

// FuzzInjectIncludeUsage checks the edit made to a streamed chat request
// the proxy relays: the result is valid JSON, asks for usage, and every
// other field — including other stream_options members — is byte for byte
// what the client sent.
func FuzzInjectIncludeUsage(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":null}`,
		`{"stream":true,"stream_options":{}}`, `{"stream":true,"stream_options":{ }}`,
		`{"stream":true,"stream_options":{"include_usage":false}}`,
		`{"stream":true,"stream_options":{"x":1,"include_usage":null}}`,
		`{"stream":true,"stream_options":{"x":[1,{"}":"}"}]}}`, `{"stream":true,"stream_options":3}`,
		"{\"stream\":true}\n", `{"stream":true,"messages":[{"content":"}"}]}`,
		`{"stream":true,"stream\u005foptions":{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The proxy's own checks before it edits a request.
		if jsoncheck.Check(body, true) != nil || !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() || !json.Valid(body) {
			return
		}
		req := parseRequest(epChat, body)
		if !req.stream || req.wantsUsage {
			return
		}
		out := injectIncludeUsage(body)
		so := gjson.GetBytes(body, "stream_options")
		if so.Exists() && !so.IsObject() && so.Type != gjson.Null {
			// Not an object: relayed unchanged for the provider to refuse.
			if !bytes.Equal(out, body) {
				t.Fatalf("stream_options %s: body changed to %s", so.Raw, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("injectIncludeUsage(%s) = invalid JSON %s", body, out)
		}
		if v := gjson.GetBytes(out, "stream_options.include_usage"); v.Type != gjson.True {
			t.Fatalf("injectIncludeUsage(%s) = %s: include_usage is %s", body, out, v.Raw)
		}
		if err := jsoncheck.Check(out, true); err != nil {
			t.Fatalf("injectIncludeUsage(%s) = %s: %v", body, out, err)
		}
		sameExcept(t, body, out, "stream_options")
		if so.IsObject() {
			sameExcept(t, []byte(so.Raw), []byte(gjson.GetBytes(out, "stream_options").Raw), "include_usage")
		}
	})
}

// sameExcept fails unless objects a and b have the same members, byte for
// byte, apart from the member skip.
func sameExcept(t *testing.T, a, b []byte, skip string) {
	t.Helper()
	var ma, mb map[string]json.RawMessage
	if err := json.Unmarshal(a, &ma); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &mb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	delete(ma, skip)
	delete(mb, skip)
	if len(ma) != len(mb) {
		t.Fatalf("members changed: %s became %s", a, b)
	}
	for k, v := range ma {
		if !bytes.Equal(v, mb[k]) {
			t.Fatalf("member %q changed from %s to %s", k, v, mb[k])
		}
	}
}

// FuzzModelLimitLookup checks that a model's limit comes from the pattern
// policy.MatchRule would choose among price rules of the same patterns, and
// that lookup falls back only when no pattern matches. The long seed is a
// model name that took a recursive matcher minutes against a pattern with
// several stars.
func FuzzModelLimitLookup(f *testing.F) {
	for _, s := range [][2]string{
		{"gpt-4o*", "gpt-4o-mini"}, {"*", ""}, {"a*b*c", "aXbYc"}, {"a*b", "ab"}, {"**", "x"},
		{"claude-*-4*", "claude-sonnet-4-5"}, {"*a*a*a*a*a*b", strings.Repeat("a", 1<<14)},
		{"gpt*4o", "gpt-4o"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, model string) {
		extra := map[string]ModelLimit{pattern: {}}
		tbl := newLimitTable(DefaultModelLimits(), extra, ModelLimit{Context: -1})
		// Give every pattern a distinct limit, to tell which one was used.
		rules := make([]policy.PriceRule, len(tbl.patterns))
		for i := range tbl.limits {
			tbl.limits[i] = ModelLimit{Context: int64(i)}
			rules[i] = policy.PriceRule{Resource: tbl.patterns[i]}
		}
		got := tbl.lookup(model)
		want, ok := policy.MatchRule(rules, model)
		if got.Context < 0 {
			if ok {
				t.Fatalf("lookup(%q) fell back, but %q matches", model, want.Resource)
			}
			return
		}
		if chosen := tbl.patterns[got.Context]; !ok || chosen != want.Resource {
			t.Fatalf("lookup(%q) used %q; price rules of the same patterns choose %q (matched: %v)", model, chosen, want.Resource, ok)
		}
	})
}
