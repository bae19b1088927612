package mcp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID    string
	Event string
	Data  []byte
}

// sseReader parses a text/event-stream body, bounding each event's data.
type sseReader struct {
	r   *bufio.Reader
	max int64
}

func newSSEReader(r io.Reader, max int64) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// readLine returns one line without its ending; lines longer than max are
// an error.
func (s *sseReader) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		if int64(len(buf)+len(chunk)) > s.max+16 {
			return nil, &TooLargeError{Size: int64(len(buf) + len(chunk)), Max: s.max, Prefix: head(append(buf, chunk...))}
		}
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				return bytes.TrimRight(buf, "\r\n"), nil
			}
			return nil, err
		}
		return bytes.TrimRight(buf, "\r\n"), nil
	}
}

// next returns the next event that carries data.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data bytes.Buffer
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return ev, err
		}
		if len(line) == 0 {
			if hasData {
				ev.Data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				return ev, nil
			}
			ev = sseEvent{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
			if int64(data.Len()) > s.max {
				return ev, &TooLargeError{Size: int64(data.Len()), Max: s.max, Prefix: head(data.Bytes())}
			}
		case "event":
			ev.Event = string(value)
		case "id":
			ev.ID = string(value)
		}
	}
}

// writeSSE writes one message event.
func writeSSE(w io.Writer, id string, data []byte) error {
	var b bytes.Buffer
	b.Grow(len(data) + 32)
	b.WriteString("event: message\n")
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

// head returns the first bytes of b, enough to find a request id.
func head(b []byte) []byte { return b[:min(len(b), 4096)] }
