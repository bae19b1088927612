package llmproxy

import (
	"errors"
	"fmt"
	"io"

	"github.com/caracal-dev/caracal/internal/sse"
	"github.com/tidwall/gjson"
)

// jsonBody relays a non-streamed response while reading its top-level
// `usage`. It holds back the response's last byte until the call is
// settled, so a client that has the whole response can rely on the ledger
// already holding its charge.
type jsonBody struct {
	src     io.ReadCloser
	c       *call
	scan    *fieldScanner
	held    byte
	hasHeld bool
	eof     bool
	err     error
	drained int64
}

func (b *jsonBody) Read(p []byte) (int, error) {
	if b.eof {
		if b.hasHeld && len(p) > 0 {
			p[0], b.hasHeld = b.held, false
			return 1, nil
		}
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	off := 0
	if b.hasHeld {
		p[0], b.hasHeld = b.held, false
		off = 1
		if len(p) == 1 {
			return 1, nil
		}
	}
	n, err := b.src.Read(p[off:])
	b.scan.Write(p[off : off+n])
	total := off + n
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
		b.finish()
		if total == 0 {
			return 0, io.EOF
		}
		return total, nil
	case err != nil:
		b.err = err
		if b.c.status >= 400 {
			b.c.release(fmt.Sprintf("upstream status %d, body cut: %v", b.c.status, err))
		} else {
			b.c.unconfirmed("response body cut: " + err.Error())
		}
		return total, err
	}
	if total > 0 {
		b.held, b.hasHeld = p[total-1], true
		total--
	}
	return total, nil
}

func (b *jsonBody) finish() {
	c := b.c
	if t, ok := usageFrom(c.prov.Kind, c.ep, gjson.ParseBytes(b.scan.Value())); ok {
		c.settle(&t)
		return
	}
	if c.status >= 400 {
		// The provider refused the request and reported no usage: it
		// bills nothing, so neither does Caracal.
		c.release(fmt.Sprintf("upstream status %d without usage", c.status))
		return
	}
	c.unconfirmed("response reported no usage")
}

func (b *jsonBody) Close() error {
	return closeOrDrain(b.c, b.src, b, &b.drained)
}

// closeOrDrain closes a response body; if the call is not settled yet (the
// client left before the end) it first keeps reading in the background,
// bounded by DrainBytes and DrainTimeout, to learn the usage.
func closeOrDrain(c *call, src io.Closer, r io.Reader, drained *int64) error {
	if c.finished.Load() {
		err := src.Close()
		c.done()
		return err
	}
	c.p.drains.Add(1)
	go func() {
		defer c.p.drains.Done()
		buf := make([]byte, 32<<10)
		for !c.finished.Load() {
			n, err := r.Read(buf)
			*drained += int64(n)
			if err != nil {
				break
			}
			if *drained > c.p.opts.DrainBytes {
				c.unconfirmed(fmt.Sprintf("client gone and no usage within %d bytes", c.p.opts.DrainBytes))
				break
			}
		}
		// A Read that failed has already settled; this covers a clean end
		// with nothing to settle from.
		c.unconfirmed("client gone before the usage was reported")
		_ = src.Close()
		c.done()
	}()
	return nil
}

// sseBody relays a Server-Sent Events stream event by event, reading usage
// as it passes, dropping the usage chunk the proxy asked for on the
// client's behalf, and settling the call before relaying the stream's
// terminal event.
type sseBody struct {
	src     io.ReadCloser
	c       *call
	st      streamState
	split   sse.Splitter
	max     int
	pend    []byte // the current event's bytes so far
	pass    bool   // the current event exceeded max: relayed unparsed
	out     []byte
	outOff  int
	ev      sse.Event
	readBuf *[]byte // from bufPool while the stream is read
	eof     bool
	err     error
	drained int64
}

func (b *sseBody) Read(p []byte) (int, error) {
	for {
		if b.outOff < len(b.out) {
			n := copy(p, b.out[b.outOff:])
			b.outOff += n
			return n, nil
		}
		b.out, b.outOff = b.out[:0], 0
		if b.eof {
			return 0, io.EOF
		}
		if b.err != nil {
			return 0, b.err
		}
		if b.readBuf == nil {
			b.readBuf = bufPool.Get().(*[]byte)
		}
		n, err := b.src.Read(*b.readBuf)
		b.process((*b.readBuf)[:n])
		if err != nil {
			if len(b.pend) > 0 {
				// A last event without its blank line still counts.
				b.event(b.pend)
				b.pend = b.pend[:0]
			}
			bufPool.Put(b.readBuf)
			b.readBuf = nil
			if errors.Is(err, io.EOF) {
				b.eof = true
				b.finish("stream ended without usage")
			} else {
				b.err = err
				b.finish("stream cut: " + err.Error())
			}
		}
	}
}

func (b *sseBody) process(data []byte) {
	for len(data) > 0 {
		i := b.split.Scan(data)
		if b.pass {
			if i < 0 {
				b.out = append(b.out, data...)
				return
			}
			b.out = append(b.out, data[:i]...)
			data, b.pass = data[i:], false
			continue
		}
		if i < 0 {
			b.pend = append(b.pend, data...)
			if len(b.pend) > b.max {
				b.out = append(b.out, b.pend...)
				b.pend, b.pass = b.pend[:0], true
			}
			return
		}
		ev := data[:i]
		if len(b.pend) > 0 {
			b.pend = append(b.pend, ev...)
			ev = b.pend
		}
		if len(ev) > b.max {
			// The same bound whether or not the event arrived in one read.
			b.out = append(b.out, ev...)
		} else {
			b.event(ev)
		}
		b.pend = b.pend[:0]
		data = data[i:]
	}
}

func (b *sseBody) event(raw []byte) {
	sse.Parse(raw, &b.ev)
	drop, terminal := b.st.onEvent(&b.ev)
	if terminal {
		b.finish("stream ended without usage")
	}
	if !drop {
		b.out = append(b.out, raw...)
	}
}

// finish settles from the final usage if the provider reported it;
// otherwise the outcome is unknown and the reservation is charged as
// unconfirmed.
func (b *sseBody) finish(reason string) {
	if b.st.final {
		t := b.st.tokens
		b.c.settle(&t)
		return
	}
	b.c.unconfirmed(reason)
}

func (b *sseBody) Close() error {
	return closeOrDrain(b.c, b.src, b, &b.drained)
}
