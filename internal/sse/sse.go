// Package sse reads Server-Sent Events (text/event-stream) as the HTML
// specification defines them: CRLF, LF and CR line ends, `:` comments,
// data lines joined with LF. One line splitter and one field parser serve
// both ways a stream is read here: cut into raw events that are relayed
// byte for byte (Splitter, Parse), and read as parsed events with bounded
// memory (Reader).
package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Event is one parsed event.
type Event struct {
	ID    string
	Event string // the event field: its type
	Data  []byte
}

// Splitter cuts a byte stream into events at blank lines. It never
// rewrites bytes: the concatenation of what it hands out equals its input.
// The zero value is ready to use.
type Splitter struct {
	// cr is true when the last byte seen was CR: an LF right after it
	// belongs to the same line end.
	cr bool
	// lineLen counts the bytes of the current line so far.
	lineLen int
}

// line finds the first line end in p. The line's bytes in p are
// p[start:end]; next is the index just past the line end. When p ends
// mid-line, ok is false and all of p belongs to the current line. blank
// reports a line end that closes an empty line.
func (s *Splitter) line(p []byte) (start, end, next int, ok, blank bool) {
	if s.cr && len(p) > 0 {
		s.cr = false
		if p[0] == '\n' {
			start = 1
		}
	}
	i := bytes.IndexAny(p[start:], "\r\n")
	if i < 0 {
		s.lineLen += len(p) - start
		return start, len(p), len(p), false, false
	}
	end = start + i
	s.cr = p[end] == '\r'
	blank = s.lineLen+i == 0
	s.lineLen = 0
	return start, end, end + 1, true, blank
}

// Scan looks for the end of the first event in p and returns the index
// just past it, or -1 if p holds no complete event. The splitter's state
// advances over p[:n] (all of p when n is -1).
func (s *Splitter) Scan(p []byte) int {
	off := 0
	for {
		_, _, next, ok, blank := s.line(p[off:])
		if !ok {
			return -1
		}
		off += next
		if blank {
			return off
		}
	}
}

// Parse reads the fields of one raw event (as Scan cuts them) into ev,
// reusing ev.Data's storage, and reports whether the event had a data line.
func Parse(raw []byte, ev *Event) (hasData bool) {
	*ev = Event{Data: ev.Data[:0]}
	var s Splitter
	for len(raw) > 0 {
		start, end, next, _, _ := s.line(raw)
		hasData = ev.field(raw[start:end], hasData)
		raw = raw[next:]
	}
	return hasData
}

// field applies one line to ev; hasData says whether ev already has a data
// line, and the result whether it has one now.
func (ev *Event) field(line []byte, hasData bool) bool {
	if len(line) == 0 || line[0] == ':' {
		return hasData
	}
	name, value, _ := bytes.Cut(line, []byte{':'})
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "event":
		ev.Event = string(value)
	case "id":
		ev.ID = string(value)
	case "data":
		if hasData {
			ev.Data = append(ev.Data, '\n')
		}
		ev.Data = append(ev.Data, value...)
		return true
	}
	return hasData
}

// TooLargeError is a line or an event's data longer than the Reader's
// maximum.
type TooLargeError struct {
	Size, Max int64
	Prefix    []byte // the first bytes of what was too large
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("event stream: %d bytes exceed the maximum of %d", e.Size, e.Max)
}

// lineSlack is what a line may hold beyond the maximum data: its field
// name and separator.
const lineSlack = 16

// Reader reads parsed events from a stream, holding at most one line and
// one event's data, each bounded by max.
type Reader struct {
	r       *bufio.Reader
	max     int64
	split   Splitter
	line    []byte
	ev      Event
	hasData bool
}

// NewReader reads events from r whose data, and each of whose lines, are
// at most max bytes (lines may be lineSlack longer).
func NewReader(r io.Reader, max int64) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next event that carries data. Events without data are
// skipped, and a last event the stream ends before dispatching is
// discarded, as the specification says. Too long a line or data is a
// *TooLargeError.
func (r *Reader) Next() (Event, error) {
	for {
		if _, err := r.r.Peek(1); err != nil {
			return Event{}, err
		}
		p, _ := r.r.Peek(r.r.Buffered())
		start, end, next, ok, blank := r.split.line(p)
		r.line = append(r.line, p[start:end]...)
		if _, err := r.r.Discard(next); err != nil {
			return Event{}, err
		}
		if n := int64(len(r.line)); n > r.max+lineSlack {
			err := &TooLargeError{Size: n, Max: r.max, Prefix: prefix(r.line)}
			r.line = r.line[:0]
			return Event{}, err
		}
		if !ok {
			continue
		}
		line := r.line
		r.line = r.line[:0]
		if blank {
			ev, dispatch := r.ev, r.hasData
			r.ev, r.hasData = Event{}, false
			if dispatch {
				return ev, nil
			}
			continue
		}
		r.hasData = r.ev.field(line, r.hasData)
		if n := int64(len(r.ev.Data)); n > r.max {
			data := r.ev.Data
			r.ev, r.hasData = Event{}, false
			return Event{}, &TooLargeError{Size: n, Max: r.max, Prefix: prefix(data)}
		}
	}
}

// prefix returns the first bytes of b, enough to find a JSON-RPC id.
func prefix(b []byte) []byte { return bytes.Clone(b[:min(len(b), 4096)]) }

// Write writes one event of type event (none when empty), with id when it
// is not empty, and data as data lines; a CR before a line's LF is dropped.
func Write(w io.Writer, event, id string, data []byte) error {
	var b bytes.Buffer
	b.Grow(len(data) + 32)
	if event != "" {
		fmt.Fprintf(&b, "event: %s\n", event)
	}
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
