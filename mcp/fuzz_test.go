package mcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// lineResult is one result of lineReader.next: a message, or the size
// of an oversize one.
type lineResult struct {
	msg    string
	tooBig bool
	size   int64
}

// refLines is newline framing written plainly: each line without its
// trailing CR/LF, blank lines skipped, lines over max reported by size.
func refLines(data []byte, max int64) []lineResult {
	var out []lineResult
	for _, seg := range bytes.SplitAfter(data, []byte("\n")) {
		if len(seg) == 0 {
			continue
		}
		if int64(len(seg)) > max+2 {
			out = append(out, lineResult{tooBig: true, size: int64(len(seg))})
			continue
		}
		line := bytes.TrimRight(seg, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if int64(len(line)) > max {
			out = append(out, lineResult{tooBig: true, size: int64(len(line))})
			continue
		}
		out = append(out, lineResult{msg: string(line)})
	}
	return out
}

// FuzzLineReader compares the stdio framing with refLines. A 16-byte
// buffer makes short inputs take the long-line path a 64 KiB one keeps
// for megabyte messages.
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n", "a\r\nb\n\n  \n\r\nc", "\n\n\n",
		strings.Repeat("x", 40) + "\nshort\n" + strings.Repeat("y", 17) + "\r\r\n", "no newline at the end",
	} {
		f.Add([]byte(s), uint8(20))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint8) {
		l := &lineReader{r: bufio.NewReaderSize(bytes.NewReader(data), 16), max: int64(max) + 1}
		var got []lineResult
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("more messages than lines in %q", data)
			}
			msg, err := l.next()
			var tl *TooLargeError
			switch {
			case errors.Is(err, io.EOF):
			case errors.As(err, &tl):
				if len(tl.Prefix) > 4096 || !bytes.Contains(data, tl.Prefix) {
					t.Fatalf("TooLargeError prefix %q is not from the input", tl.Prefix)
				}
				if tl.Max != l.max || tl.Error() == "" {
					t.Fatalf("TooLargeError %+v", tl)
				}
				got = append(got, lineResult{tooBig: true, size: tl.Size})
				continue
			case err != nil:
				t.Fatalf("next: %v", err)
			default:
				got = append(got, lineResult{msg: string(msg)})
				continue
			}
			break
		}
		if want := refLines(data, l.max); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("lineReader(%q, max %d) = %v, want %v", data, l.max, got, want)
		}
	})
}

// FuzzLineRoundTrip writes a message with lineWriter and reads it back:
// one line out, the same message in (compacted), and valid JSON stays
// the same JSON value.
func FuzzLineRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"result":{}}`, "{\n  \"id\": 1,\r\n  \"s\": \"a\\nb\"\n}\n", "not json\nat all\r", "\n", `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var buf bytes.Buffer
		w := &lineWriter{w: &buf}
		if err := w.write(msg); err != nil {
			t.Fatal(err)
		}
		out := buf.Bytes()
		if bytes.ContainsAny(out[:len(out)-1], "\r\n") || out[len(out)-1] != '\n' {
			t.Fatalf("write(%q) = %q: not one line", msg, out)
		}
		line := out[:len(out)-1]
		got, err := newLineReader(bytes.NewReader(out), int64(len(out))).next()
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("blank line read as %q, %v", got, err)
			}
		case err != nil || !bytes.Equal(got, line):
			t.Fatalf("wrote %q, read back %q, %v", line, got, err)
		}
		if json.Valid(msg) {
			var a, b bytes.Buffer
			_ = json.Compact(&a, msg)
			if err := json.Compact(&b, line); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("JSON %q written as %q (%v)", msg, line, err)
			}
		}
	})
}

// escapeAllJSON writes s as a JSON string with every rune a \u escape.
func escapeAllJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzCanonicalID requires every JSON spelling of one string id — as sent
// raw, escaped by Go with or without HTML escaping, or escaped rune by
// rune — to have one canonical form, since a peer may re-encode the id it
// answers; the canonical form decodes to the same value and is stable.
func FuzzCanonicalID(f *testing.F) {
	for _, s := range []string{"1", "é1", "<a&b>", "a\u2028b", "\xff", "tab\there", `q"uote\`, "😀", ""} {
		f.Add(s, []byte(`"`+s+`"`))
	}
	f.Add("", []byte(`7`))
	f.Add("", []byte(`-1.5e3`))
	f.Add("", []byte(`"\u00e9\ud83d\ude00\n"`))
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		if json.Valid(raw) {
			r := gjson.ParseBytes(raw)
			c := canonicalID(r)
			if again := canonicalID(gjson.Parse(c)); again != c {
				t.Fatalf("canonicalID(%s) = %s, but canonicalID(%s) = %s", raw, c, c, again)
			}
			if r.Type == gjson.String {
				var want, got string
				_ = json.Unmarshal(raw, &want)
				if err := json.Unmarshal([]byte(c), &got); err != nil || got != want {
					t.Fatalf("canonicalID(%s) = %s, which decodes to %q, %v; want %q", raw, c, got, err, want)
				}
			} else if c != r.Raw {
				t.Fatalf("canonicalID(%s) = %s, want it kept as sent", raw, c)
			}
		}
		html, _ := json.Marshal(s)
		var plain bytes.Buffer
		enc := json.NewEncoder(&plain)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		spellings := []string{string(html), strings.TrimSuffix(plain.String(), "\n"), escapeAllJSON(s)}
		if !strings.ContainsAny(s, "\"\\") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
			spellings = append(spellings, `"`+s+`"`) // raw, as a client may send it
		}
		want := canonicalID(gjson.Parse(spellings[0]))
		for _, sp := range spellings[1:] {
			if got := canonicalID(gjson.Parse(sp)); got != want {
				t.Fatalf("id %q: canonicalID(%s) = %s but canonicalID(%s) = %s", s, spellings[0], want, sp, got)
			}
		}
	})
}

// refSSE is the SSE specification's event stream parsing for streams with
// LF line ends: data lines joined with LF, a blank line dispatches an event
// that has data, an unterminated last event is discarded.
func refSSE(data []byte) []sseEvent {
	var out []sseEvent
	var ev sseEvent
	var buf []byte
	hasData := false
	lines := bytes.SplitAfter(data, []byte("\n"))
	for _, l := range lines {
		if !bytes.HasSuffix(l, []byte("\n")) {
			break // the stream ended mid-line
		}
		l = l[:len(l)-1]
		if len(l) == 0 {
			if hasData {
				ev.Data = bytes.TrimSuffix(buf, []byte("\n"))
				out = append(out, ev)
			}
			ev, buf, hasData = sseEvent{}, nil, false
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(l, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			buf = append(append(buf, value...), '\n')
			hasData = true
		case "event":
			ev.Event = string(value)
		}
	}
	return out
}

// FuzzSSEReader compares the upstream SSE reader with the specification
// on LF streams, bounds every event by max, and reads back what writeSSE
// writes.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"event: message\ndata: {\"id\":1}\n\n", "data: a\ndata: b\n\n: c\n\ndata\n\n", "id: 7\nevent: x\n\n",
		"data: {\"x\":1}\r\n\r\n", "data: unterminated", "data:\n\ndata: \n\n",
	} {
		f.Add([]byte(s), uint8(16), "", []byte(`{"jsonrpc":"2.0"}`))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint8, id string, msg []byte) {
		small := newSSEReader(bytes.NewReader(data), int64(max))
		for range len(data) + 1 {
			ev, err := small.next()
			if err != nil {
				break
			}
			if len(ev.Data) > int(max) {
				t.Fatalf("event data of %d bytes read with max %d", len(ev.Data), max)
			}
		}
		if !bytes.Contains(data, []byte("\r")) {
			r := newSSEReader(bytes.NewReader(data), 1<<20)
			var got []sseEvent
			for {
				ev, err := r.next()
				if err != nil {
					break
				}
				ev.ID = ""
				got = append(got, ev)
			}
			if want := refSSE(data); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Fatalf("sseReader(%q) = %q, want %q", data, got, want)
			}
		}
		if strings.ContainsAny(id, "\r\n") || bytes.Contains(msg, []byte("\r")) {
			return
		}
		var w bytes.Buffer
		for range 2 {
			if err := writeSSE(&w, id, msg); err != nil {
				t.Fatal(err)
			}
		}
		r := newSSEReader(&w, int64(len(msg)+len(id))+64) // every line is bounded by max too
		for i := range 2 {
			ev, err := r.next()
			if err != nil || ev.Event != "message" || !bytes.Equal(ev.Data, msg) || ev.ID != id {
				t.Fatalf("writeSSE(%q, %q) read back as %+v, %v (event %d)", id, msg, ev, err, i)
			}
		}
	})
}
