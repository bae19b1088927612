package mcp

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestSSEReaderLineEnds: the SSE specification allows CRLF, LF and CR
// line ends; the reader once split lines at LF only, so a server ending
// lines with CR alone had its events run together and lost.
func TestSSEReaderLineEnds(t *testing.T) {
	for name, stream := range map[string]string{
		"LF":    "event: message\nid: 7\ndata: {\"id\":1}\n\n: ping\n\ndata: {\"id\":2}\n\n",
		"CRLF":  "event: message\r\nid: 7\r\ndata: {\"id\":1}\r\n\r\n: ping\r\n\r\ndata: {\"id\":2}\r\n\r\n",
		"CR":    "event: message\rid: 7\rdata: {\"id\":1}\r\r: ping\r\rdata: {\"id\":2}\r\r",
		"mixed": "event: message\rid: 7\r\ndata: {\"id\":1}\n\r: ping\r\n\ndata: {\"id\":2}\r\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(stream), 1<<10)
			want := []sseEvent{{ID: "7", Event: "message", Data: []byte(`{"id":1}`)}, {Data: []byte(`{"id":2}`)}}
			for i, w := range want {
				ev, err := r.next()
				if err != nil || ev.ID != w.ID || ev.Event != w.Event || string(ev.Data) != string(w.Data) {
					t.Fatalf("event %d = %+v (data %q), %v; want %+v (data %q)", i, ev, ev.Data, err, w, w.Data)
				}
			}
			if ev, err := r.next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last event: %+v, %v; want io.EOF", ev, err)
			}
		})
	}
}

func TestSSEReaderTooLarge(t *testing.T) {
	for name, stream := range map[string]string{
		"data":         "data: " + strings.Repeat("x", 40) + "\n\n",
		"joined lines": strings.Repeat("data: 0123456789\r", 4) + "\r",
		"line":         ": " + strings.Repeat("x", 60) + "\n\n",
	} {
		r := newSSEReader(strings.NewReader(stream), 32)
		_, err := r.next()
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Max != 32 {
			t.Errorf("%s: err = %v, want a *TooLargeError with max 32", name, err)
		}
	}
}
