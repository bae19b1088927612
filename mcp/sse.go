package mcp

import (
	"errors"
	"io"

	"github.com/caracal-dev/caracal/internal/sse"
)

// sseEvent is one Server-Sent Event.
type sseEvent = sse.Event

// sseReader parses a text/event-stream body, bounding each event's data;
// an event too large is a *TooLargeError, as a line too long is on stdio.
type sseReader struct{ r *sse.Reader }

func newSSEReader(r io.Reader, max int64) *sseReader {
	return &sseReader{r: sse.NewReader(r, max)}
}

// next returns the next event that carries data.
func (s *sseReader) next() (sseEvent, error) {
	ev, err := s.r.Next()
	var tl *sse.TooLargeError
	if errors.As(err, &tl) {
		return ev, &TooLargeError{Size: tl.Size, Max: tl.Max, Prefix: tl.Prefix}
	}
	return ev, err
}

// writeSSE writes one message event.
func writeSSE(w io.Writer, id string, data []byte) error {
	return sse.Write(w, "message", id, data)
}
