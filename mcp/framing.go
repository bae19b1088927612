package mcp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultMaxMessageSize is the largest JSON-RPC message the proxy accepts
// from either side unless configured otherwise.
const DefaultMaxMessageSize = 32 << 20

// TooLargeError reports a message longer than the configured maximum. The
// message is discarded; Prefix holds its first bytes, enough to find a
// request id in most messages.
type TooLargeError struct {
	Size   int64 // bytes read before the end of the message
	Max    int64
	Prefix []byte
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the maximum message size of %s (set mcp.max_message_size or --max-message-size)", e.Size, sizeString(e.Max))
}

// lineReader reads newline-delimited messages of any length up to max.
type lineReader struct {
	r   *bufio.Reader
	max int64
}

func newLineReader(r io.Reader, max int64) *lineReader {
	if max <= 0 {
		max = DefaultMaxMessageSize
	}
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next non-blank line, without its line ending, in a new
// slice the caller owns. An oversize line is consumed and reported as a
// *TooLargeError; reading can go on after it.
func (l *lineReader) next() ([]byte, error) {
	for {
		var buf []byte
		var size int64
		tooLarge := false
		for {
			chunk, err := l.r.ReadSlice('\n')
			size += int64(len(chunk))
			if !tooLarge {
				if size > l.max+2 { // +2: the line ending is not part of the message
					tooLarge = true
					keep := 4096 - len(buf)
					if keep > 0 {
						buf = append(buf, chunk[:min(keep, len(chunk))]...)
					}
				} else {
					buf = append(buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				if errors.Is(err, io.EOF) && size > 0 {
					break
				}
				return nil, err
			}
			break
		}
		if tooLarge {
			return nil, &TooLargeError{Size: size, Max: l.max, Prefix: buf}
		}
		buf = bytes.TrimRight(buf, "\r\n")
		if len(bytes.TrimSpace(buf)) == 0 {
			continue
		}
		if int64(len(buf)) > l.max {
			return nil, &TooLargeError{Size: int64(len(buf)), Max: l.max, Prefix: buf[:min(len(buf), 4096)]}
		}
		return buf, nil
	}
}

// lineWriter writes one message per line; it is safe for concurrent use.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lineWriter) write(msg []byte) error {
	line := frameLine(msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(line)
	return err
}

// frameLine is msg as one newline-terminated line, the stdio framing in
// both directions.
func frameLine(msg []byte) []byte {
	msg = compactLine(msg)
	line := make([]byte, len(msg)+1)
	copy(line, msg)
	line[len(msg)] = '\n'
	return line
}
