package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// httpConn speaks to a Streamable HTTP upstream, falling back to the older
// HTTP+SSE transport when the server refuses the initialize POST the way
// old servers do (400, 404 or 405). Bodies pass through unparsed.
type httpConn struct {
	spec   UpstreamSpec
	ev     connEvents
	client *http.Client
	max    int64
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	sessionID  string
	protocol   string
	getRunning bool
	legacy     *legacySSE
}

func dialHTTP(ctx context.Context, spec UpstreamSpec, ev connEvents, max int64, log *slog.Logger) (*httpConn, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream url %q: want an http:// or https:// URL", spec.URL)
	}
	cctx, cancel := context.WithCancel(ctx)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &httpConn{
		spec: spec, ev: ev, max: max, log: log.With("upstream_url", spec.URL), ctx: cctx, cancel: cancel,
		client: &http.Client{Transport: tr},
	}, nil
}

// SessionID is the session id the upstream assigned, if any.
func (c *httpConn) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID
}

func (c *httpConn) headers(h http.Header) {
	for k, v := range c.spec.Headers {
		h.Set(k, v)
	}
	c.mu.Lock()
	if c.sessionID != "" {
		h.Set("Mcp-Session-Id", c.sessionID)
	}
	if c.protocol != "" {
		h.Set("Mcp-Protocol-Version", c.protocol)
	}
	c.mu.Unlock()
}

// notifyTimeout bounds the POST of a notification or response, which a
// Streamable HTTP server answers with 202 at once.
const notifyTimeout = 30 * time.Second

func (c *httpConn) send(ctx context.Context, msg []byte) error {
	c.mu.Lock()
	legacy := c.legacy
	c.mu.Unlock()
	if legacy != nil {
		return legacy.post(ctx, msg)
	}
	m, _ := parseMessage(msg)
	if m.kind != kindRequest {
		// Notifications and responses are answered at once with 202;
		// waiting keeps them ordered before the requests that follow. The
		// wait is bounded so an upstream that stops answering cannot stall
		// the host's messages behind it for ever.
		ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
		defer cancel()
		if err := c.post(ctx, m, msg); err != nil {
			return err
		}
		if m.method == "notifications/initialized" {
			c.startGet()
		}
		return nil
	}
	if m.method == "initialize" {
		return c.post(ctx, m, msg)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.post(c.ctx, m, msg)
	}()
	return nil
}

// post sends one message and relays whatever comes back. For a request it
// reports failures through ev.failed and returns nil; for other messages it
// returns the error.
func (c *httpConn) post(ctx context.Context, m message, msg []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.spec.URL, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	c.headers(req.Header)
	modernHeaders(req.Header, m)
	resp, err := c.client.Do(req)
	if err != nil {
		if m.kind != kindRequest {
			return fmt.Errorf("%w: %w", errUpstreamDown, err)
		}
		var op *net.OpError
		unknown := !(errors.As(err, &op) && op.Op == "dial")
		c.ev.failed(m.id, err, unknown)
		return nil
	}
	defer resp.Body.Close()
	if m.method == "initialize" {
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			c.mu.Lock()
			c.sessionID = sid
			c.mu.Unlock()
		}
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			c.log.Info("upstream refused a Streamable HTTP initialize; trying the HTTP+SSE transport", "status", resp.StatusCode)
			l, err := c.startLegacy()
			if err != nil {
				c.ev.failed(m.id, fmt.Errorf("neither Streamable HTTP (status %d) nor SSE worked: %w", resp.StatusCode, err), false)
				return nil
			}
			return l.post(ctx, msg)
		}
	}
	if resp.StatusCode == http.StatusNotFound && c.SessionID() != "" {
		// The upstream forgot the session: start a new one.
		err := fmt.Errorf("upstream session expired (HTTP 404)")
		c.mu.Lock()
		c.sessionID = ""
		c.mu.Unlock()
		if m.kind == kindRequest {
			c.ev.failed(m.id, err, false)
		}
		c.ev.down(err)
		c.ev.restarted()
		return nil
	}
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("upstream HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		if m.kind != kindRequest {
			return err
		}
		c.ev.failed(m.id, err, resp.StatusCode >= 500)
		return nil
	}
	if m.kind != kindRequest {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	got := false
	deliver := func(b []byte) {
		if mm, ok := parseMessage(b); ok && mm.kind == kindResponse && mm.id == m.id {
			got = true
			if m.method == "initialize" {
				if v := gjson.GetBytes(b, "result.protocolVersion").String(); v != "" {
					c.mu.Lock()
					c.protocol = v
					c.mu.Unlock()
				}
			}
		}
		c.ev.message(b)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "text/event-stream":
		r := newSSEReader(resp.Body, c.max)
		for !got {
			ev, err := r.next()
			if err != nil {
				c.ev.failed(m.id, fmt.Errorf("the upstream's event stream ended before the response: %w", err), true)
				return nil
			}
			if ev.Event == "" || ev.Event == "message" {
				c.deliverAll(ev.Data, deliver)
			}
		}
	default:
		body, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
		if err == nil && int64(len(body)) > c.max {
			err = &TooLargeError{Size: int64(len(body)), Max: c.max}
		}
		if err != nil {
			c.ev.failed(m.id, err, true)
			return nil
		}
		c.deliverAll(body, deliver)
		if !got {
			c.ev.failed(m.id, errors.New("the upstream's reply did not answer the request"), true)
		}
	}
	return nil
}

// deliverAll delivers a message or each message of a batch.
func (c *httpConn) deliverAll(b []byte, deliver func([]byte)) {
	if firstNonSpace(b) == '[' {
		for _, e := range gjson.ParseBytes(b).Array() {
			deliver([]byte(e.Raw))
		}
		return
	}
	if len(bytes.TrimSpace(b)) > 0 {
		deliver(b)
	}
}

// startGet opens the standalone GET stream for server-initiated messages.
func (c *httpConn) startGet() {
	c.mu.Lock()
	if c.getRunning {
		c.mu.Unlock()
		return
	}
	c.getRunning = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		backoff := time.Second
		last := ""
		for c.ctx.Err() == nil {
			req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.spec.URL, nil)
			if err != nil {
				return
			}
			req.Header.Set("Accept", "text/event-stream")
			if last != "" {
				req.Header.Set("Last-Event-ID", last)
			}
			c.headers(req.Header)
			resp, err := c.client.Do(req)
			if err == nil {
				if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotFound {
					resp.Body.Close()
					return // the server offers no standalone stream
				}
				if resp.StatusCode == http.StatusOK {
					backoff = time.Second
					r := newSSEReader(resp.Body, c.max)
					for {
						ev, err := r.next()
						if err != nil {
							break
						}
						if ev.ID != "" {
							last = ev.ID
						}
						if ev.Event == "" || ev.Event == "message" {
							c.deliverAll(ev.Data, c.ev.message)
						}
					}
				}
				resp.Body.Close()
			}
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}()
}

func (c *httpConn) close() error {
	sid := c.SessionID()
	if sid != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.spec.URL, nil)
		if err == nil {
			c.headers(req.Header)
			if resp, err := c.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		cancel()
	}
	c.cancel()
	c.wg.Wait()
	c.client.CloseIdleConnections()
	return nil
}

// legacySSE is the HTTP+SSE transport of protocol revision 2024-11-05: a
// GET event stream whose first event names the URL to POST messages to.
type legacySSE struct {
	c        *httpConn
	endpoint string
}

func (c *httpConn) startLegacy() (*legacySSE, error) {
	ready := make(chan error, 1)
	l := &legacySSE{c: c}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		first := true
		for c.ctx.Err() == nil {
			err := l.stream(func() {
				if first {
					first = false
					ready <- nil
				} else {
					c.ev.restarted()
				}
			})
			if first {
				ready <- err
				return
			}
			c.ev.down(fmt.Errorf("upstream event stream ended: %w", err))
			select {
			case <-time.After(time.Second):
			case <-c.ctx.Done():
				return
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		return nil, errors.New("no endpoint event within 30s")
	}
	c.mu.Lock()
	c.legacy = l
	c.mu.Unlock()
	return l, nil
}

// stream reads one SSE connection; onEndpoint runs when the POST URL is known.
func (l *legacySSE) stream(onEndpoint func()) error {
	c := l.c
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.spec.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range c.spec.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", c.spec.URL, resp.StatusCode)
	}
	r := newSSEReader(resp.Body, c.max)
	for {
		ev, err := r.next()
		if err != nil {
			return err
		}
		switch ev.Event {
		case "endpoint":
			base, _ := url.Parse(c.spec.URL)
			ep, err := base.Parse(string(bytes.TrimSpace(ev.Data)))
			if err != nil {
				return fmt.Errorf("bad endpoint event %q: %w", ev.Data, err)
			}
			c.mu.Lock()
			l.endpoint = ep.String()
			c.mu.Unlock()
			onEndpoint()
		case "", "message":
			c.deliverAll(ev.Data, c.ev.message)
		}
	}
}

func (l *legacySSE) post(ctx context.Context, msg []byte) error {
	c := l.c
	c.mu.Lock()
	ep := l.endpoint
	c.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.spec.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errUpstreamDown, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("upstream HTTP %d", resp.StatusCode)
	}
	return nil
}
