package llmproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/caracal-dev/caracal/internal/httpserver"
)

// credentialHeaders are removed from every relayed request: the agent's
// key must never reach the provider.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Api-Key", "Proxy-Authorization", "Cookie"}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	out := pr.Out.WithContext(c.upCtx)
	t := c.prov.target
	out.URL.Scheme, out.URL.Host = t.Scheme, t.Host
	out.URL.Path = strings.TrimRight(t.Path, "/") + c.rest
	out.URL.RawPath = ""
	out.Host = ""
	h := out.Header
	for _, k := range credentialHeaders {
		h.Del(k)
	}
	// The transport then asks for gzip itself and decompresses, so the
	// proxy can read usage from the body.
	h.Del("Accept-Encoding")
	if c.prov.Kind == KindAnthropic {
		h.Set("X-Api-Key", c.prov.APIKey)
	} else {
		h.Set("Authorization", "Bearer "+c.prov.APIKey)
	}
	if c.body != nil {
		body := c.body
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		h.Del("Content-Length")
	}
	pr.Out = out
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	c := resp.Request.Context().Value(callKey{}).(*call)
	c.status = resp.StatusCode
	scrubResponse(resp, c.prov.keyForms)
	c.decisionHeaders(resp.Header)
	if c.ep == epOther {
		// Priced per request: the request ran unless the provider refused.
		if resp.StatusCode < 400 {
			c.settle(nil)
		} else {
			c.release(fmt.Sprintf("upstream status %d", resp.StatusCode))
		}
		resp.Body = &closeBody{ReadCloser: resp.Body, c: c}
		return nil
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 300 && ct == "text/event-stream" {
		st := streamState{kind: c.prov.Kind, ep: c.ep}
		st.stripUsage = c.req.stream && (c.ep == epChat || c.ep == epCompletions) && !c.req.wantsUsage
		if st.stripUsage {
			resp.Header.Del("Content-Length")
			resp.ContentLength = -1
		}
		resp.Body = &sseBody{src: resp.Body, c: c, st: st, max: c.p.opts.MaxEventBytes}
		return nil
	}
	resp.Body = &jsonBody{src: resp.Body, c: c, scan: newFieldScanner("usage", 1<<16)}
	return nil
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	c := r.Context().Value(callKey{}).(*call)
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	var slow *httpserver.BodyTimeoutError
	switch {
	case errors.As(err, &slow):
		// The client's body, streamed to the provider as it came, was cut
		// off: the provider never received a whole request to run.
		c.release("request body cut off by the read timeout: " + err.Error())
	case c.wrote.Load():
		// The provider may have run the request: never refund silently.
		c.unconfirmed("upstream failed after the request was sent: " + err.Error())
	default:
		c.release("upstream unreachable: " + err.Error())
	}
	c.done()
	c.decisionHeaders(w.Header())
	if cutOff(w, c.prov.Kind, err) {
		return
	}
	if timeout {
		writeError(w, c.prov.Kind, http.StatusGatewayTimeout, "upstream_timeout", fmt.Sprintf("provider %s did not answer in time", c.prov.Name))
		return
	}
	p.log.Warn("upstream error", "provider", c.prov.Name, "request_id", c.ticket.RequestID, "err", err)
	writeError(w, c.prov.Kind, http.StatusBadGateway, "upstream_unreachable", fmt.Sprintf("provider %s could not be reached", c.prov.Name))
}

// cutOff answers 408 when err is the listener's read timeout cutting a
// trickling request body off (see internal/httpserver).
func cutOff(w http.ResponseWriter, k Kind, err error) bool {
	var slow *httpserver.BodyTimeoutError
	if !errors.As(err, &slow) {
		return false
	}
	writeError(w, k, http.StatusRequestTimeout, "request_timeout", slow.Error())
	return true
}

// bufPool recycles the 32 KiB buffers responses are copied and read
// through, so a busy proxy does not allocate two per request.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type copyBuffers struct{}

func (copyBuffers) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { bufPool.Put(&b) }
