package sse

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzReaderAgreesWithSplitter: reading a stream with the Reader gives the
// events that Scan and Parse give, less those without data and the last
// one the stream does not end.
func FuzzReaderAgreesWithSplitter(f *testing.F) {
	for _, s := range []string{
		"event: message\nid: 1\ndata: a\n\n", "data: a\r\rdata: b\r\n\r\n", ": c\n\ndata\n\n", "data: x\r\n\r", "data: cut",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want []Event
		var s Splitter
		for rest := data; ; {
			i := s.Scan(rest)
			if i < 0 {
				break
			}
			var ev Event
			if Parse(rest[:i], &ev) {
				want = append(want, ev)
			}
			rest = rest[i:]
		}
		r := NewReader(bytes.NewReader(data), int64(len(data)))
		var got []Event
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			got = append(got, ev)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("Reader(%q) = %q; Scan and Parse give %q", data, got, want)
		}
	})
}

func TestWriteReadsBack(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, "message", "7", []byte("a\r\nb")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "event: message\nid: 7\ndata: a\ndata: b\n\n"; got != want {
		t.Fatalf("Write = %q, want %q", got, want)
	}
}
