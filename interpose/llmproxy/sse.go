package llmproxy

import "bytes"

// sseSplitter cuts a Server-Sent Events byte stream into events at blank
// lines, accepting CRLF, LF and CR line ends as the SSE specification does.
// It never rewrites bytes: the concatenation of what it hands out equals
// its input, so relayed streams stay byte-for-byte identical except for
// events the proxy drops on purpose.
type sseSplitter struct {
	// cr is true when the last byte seen was CR: an LF right after it
	// belongs to the same line end.
	cr bool
	// lineLen counts the bytes of the current line so far.
	lineLen int
}

// scan looks for the end of the first event in p and returns the index
// just past it, or -1 if p holds no complete event. The splitter's state
// advances over p[:n] (all of p when n is -1).
func (s *sseSplitter) scan(p []byte) int {
	for i, c := range p {
		if s.cr && c == '\n' {
			s.cr = false
			continue
		}
		s.cr = false
		if c == '\r' || c == '\n' {
			s.cr = c == '\r'
			if s.lineLen == 0 {
				return i + 1
			}
			s.lineLen = 0
			continue
		}
		s.lineLen++
	}
	return -1
}

// sseEvent is the parsed form of one event.
type sseEvent struct {
	name string
	data []byte
}

// parseEvent reads the event and data fields of one raw event. Multiple
// data lines are joined with LF, as the specification says.
func parseEvent(raw []byte, ev *sseEvent) {
	ev.name = ""
	ev.data = ev.data[:0]
	first := true
	for len(raw) > 0 {
		end := bytes.IndexAny(raw, "\r\n")
		line := raw
		next := len(raw)
		if end >= 0 {
			line = raw[:end]
			next = end + 1
			if raw[end] == '\r' && end+1 < len(raw) && raw[end+1] == '\n' {
				next++
			}
		}
		raw = raw[next:]
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "event":
			ev.name = string(value)
		case "data":
			if !first {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, value...)
			first = false
		}
	}
}
