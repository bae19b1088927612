package llmproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// redactLimit bounds how much of an error response is searched for the
// provider's key.
const redactLimit = 1 << 20

// scrubResponse is the one rule that keeps the provider's key from the
// agent: whatever the status, every response header (Location included),
// 1xx header (scrub1xx) and trailer that holds the key, as sent or
// percent-encoded as a URL carries it, is dropped — an upstream that echoes
// request headers, or redirects to a URL with the key in it, would
// otherwise hand it over on a 2xx or 3xx. The body of a redirect or error
// response (status ≥ 300) is searched too, in its first redactLimit bytes:
// some providers quote the key they were sent in an authentication error,
// and a redirect's body repeats its Location. Bodies of successful
// responses are relayed unsearched: they are the model's output, streamed
// as it comes.
func scrubResponse(resp *http.Response, forms []string) {
	if len(forms) == 0 {
		return
	}
	if len(forms[0]) < minHeaderKey {
		// A placeholder key ("x", "EMPTY", "ollama") for a local server is
		// no secret, and would match ordinary header text such as
		// Content-Type: text/event-stream.
		if resp.StatusCode >= 300 {
			redactBody(resp, forms)
		}
		return
	}
	scrubHeader(resp.Header, forms)
	if len(resp.Trailer) > 0 {
		// The names are announced before the body, the values arrive
		// after it.
		scrubHeader(resp.Trailer, forms)
		resp.Body = &trailerScrub{ReadCloser: resp.Body, resp: resp, forms: forms}
	}
	if resp.StatusCode >= 300 {
		redactBody(resp, forms)
	}
}

// minHeaderKey is the shortest provider key searched for in headers.
const minHeaderKey = 8

// keyForms are the spellings of a provider key that scrubResponse looks for.
func keyForms(key string) []string {
	if key == "" {
		return nil
	}
	forms := []string{key}
	for _, f := range []string{url.QueryEscape(key), url.PathEscape(key)} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

// scrubHeader drops every header whose name or value holds one of forms.
func scrubHeader(h http.Header, forms []string) {
	holds := func(s string) bool {
		for _, f := range forms {
			if strings.Contains(s, f) {
				return true
			}
		}
		return false
	}
	for name, vs := range h {
		if holds(name) || slices.ContainsFunc(vs, holds) {
			delete(h, name)
		}
	}
}

// trailerScrub scrubs the response's trailers once the body has been read
// to its end, which is when the transport fills them in and before the
// reverse proxy copies them to the client.
type trailerScrub struct {
	io.ReadCloser
	resp  *http.Response
	forms []string
}

func (b *trailerScrub) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		scrubHeader(b.resp.Trailer, b.forms)
	}
	return n, err
}

// scrub1xx scrubs informational (1xx) responses, which the reverse proxy
// relays to the client as they arrive, before any ModifyResponse runs.
type scrub1xx struct {
	next  http.RoundTripper
	forms []string
}

func (t scrub1xx) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(t.forms) == 0 || len(t.forms[0]) < minHeaderKey {
		return t.next.RoundTrip(r)
	}
	// A trace added here runs before the reverse proxy's own, which
	// copies the 1xx header to the client.
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(_ int, h textproto.MIMEHeader) error {
			scrubHeader(http.Header(h), t.forms)
			return nil
		},
	})
	return t.next.RoundTrip(r.WithContext(ctx))
}

// redactBody replaces every form of the key in the first redactLimit
// bytes of the body.
func redactBody(resp *http.Response, forms []string) {
	head, err := io.ReadAll(io.LimitReader(resp.Body, redactLimit))
	found := false
	for _, f := range forms {
		if bytes.Contains(head, []byte(f)) {
			head = bytes.ReplaceAll(head, []byte(f), []byte("[redacted by Caracal]"))
			found = true
		}
	}
	if found {
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
	}
	resp.Body = &prefixedBody{r: io.MultiReader(bytes.NewReader(head), errReader{err}, resp.Body), c: resp.Body}
}

// prefixedBody is a body whose first bytes were read ahead.
type prefixedBody struct {
	r io.Reader
	c io.Closer
}

func (b *prefixedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *prefixedBody) Close() error               { return b.c.Close() }

// errReader replays a read-ahead error (nil: nothing) at its place.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}
