package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
)

const (
	adminTok    = "cra_admin_secret_token"
	readOnlyTok = "cra_readonly_secret_token"
)

type stubTokens struct{}

func (stubTokens) CheckAdminToken(_ context.Context, tok string) (Identity, error) {
	switch tok {
	case adminTok:
		return Identity{Name: "ops"}, nil
	case readOnlyTok:
		return Identity{Name: "viewer", ReadOnly: true}, nil
	}
	return Identity{}, ErrBadToken
}

// stubEvents is a ledger whose events are all integrated.
type stubEvents struct {
	mu  sync.Mutex
	evs []ledger.Event
}

func (s *stubEvents) add(resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ledger.Event{Seq: int64(len(s.evs)), ID: "ev-" + resource, Resource: resource, Amount: money.MustParse("0.10"), Currency: "USD", Outcome: "charged"})
}

func (s *stubEvents) TreeSize(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.evs)), nil
}

func (s *stubEvents) QueryEvents(_ context.Context, f ledger.EventFilter, fn func(ledger.Event) error) error {
	s.mu.Lock()
	evs := append([]ledger.Event(nil), s.evs...)
	s.mu.Unlock()
	for _, ev := range evs {
		if ev.Seq >= f.FromSeq {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// stubAPI answers every request with the credential it received, and
// refuses a read-only token's changes as the real API does.
var stubAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	switch {
	case auth == "":
		problem(w, http.StatusUnauthorized, "unauthorized", "no credentials")
	case auth == "Bearer "+readOnlyTok && r.Method != http.MethodGet:
		problem(w, http.StatusForbidden, "forbidden", "read-only")
	default:
		writeJSON(w, http.StatusOK, map[string]string{"auth": auth, "method": r.Method, "path": r.URL.Path})
	}
})

func newServer(t *testing.T, tls bool) (*httptest.Server, *stubEvents) {
	t.Helper()
	return newServerStop(t, tls, nil)
}

func newServerStop(t *testing.T, tls bool, stop chan struct{}) (*httptest.Server, *stubEvents) {
	t.Helper()
	evs := &stubEvents{}
	h, err := New(Options{API: stubAPI, Tokens: stubTokens{}, Events: evs, Poll: 10 * time.Millisecond, Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, evs
}

// browser is an HTTP client with a cookie jar that sends the headers a
// browser page of origin sends.
type browser struct {
	t      *testing.T
	c      *http.Client
	base   string
	origin string
	site   string // Sec-Fetch-Site
	csrf   string
}

func newBrowser(t *testing.T, srv *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	c := srv.Client()
	c.Jar = jar
	return &browser{t: t, c: c, base: srv.URL, origin: srv.URL, site: "same-origin"}
}

func (b *browser) do(method, path, body string, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if method != http.MethodGet && b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	if b.site != "" {
		req.Header.Set("Sec-Fetch-Site", b.site)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res, string(out)
}

func (b *browser) signIn(tok string) *http.Response {
	b.t.Helper()
	res, body := b.do(http.MethodPost, "/ui/session", `{"token":"`+tok+`"}`, map[string]string{"Content-Type": "application/json"})
	if res.StatusCode != http.StatusOK {
		b.t.Fatalf("sign in: %d %s", res.StatusCode, body)
	}
	var v sessionView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		b.t.Fatal(err)
	}
	b.csrf = v.CSRF
	return res
}

func TestSignInCookies(t *testing.T) {
	for _, tls := range []bool{false, true} {
		srv, _ := newServer(t, tls)
		b := newBrowser(t, srv)
		res := b.signIn(adminTok)
		var sess, csrf *http.Cookie
		for _, c := range res.Cookies() {
			switch c.Name {
			case sessionCookie:
				sess = c
			case csrfCookie:
				csrf = c
			}
		}
		if sess == nil || csrf == nil {
			t.Fatalf("tls=%v: cookies %v", tls, res.Cookies())
		}
		if !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure != tls {
			t.Errorf("tls=%v: session cookie %+v: want HttpOnly, SameSite=Strict, Secure only with TLS", tls, sess)
		}
		if csrf.HttpOnly || csrf.Value != b.csrf {
			t.Errorf("tls=%v: csrf cookie %+v: want readable by the page and equal to the sign-in answer's csrf", tls, csrf)
		}
		if strings.Contains(sess.Value, adminTok) || strings.Contains(csrf.Value, adminTok) {
			t.Errorf("tls=%v: a cookie holds the token", tls)
		}
	}
}

func TestSignInRefusals(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	if res, body := b.do(http.MethodPost, "/ui/session", `{"token":"cra_nope"}`, nil); res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"code":"unauthorized"`) {
		t.Errorf("unknown token: %d %s", res.StatusCode, body)
	}
	if res, _ := b.do(http.MethodPost, "/ui/session", `{"tok":"x"}`, nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("bad body: %d", res.StatusCode)
	}
	b.origin, b.site = "http://evil.example", "cross-site"
	if res, _ := b.do(http.MethodPost, "/ui/session", `{"token":"`+adminTok+`"}`, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d, want 403", res.StatusCode)
	}
	if res, _ := b.do(http.MethodGet, "/ui/session", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("whoami without a session: %d", res.StatusCode)
	}
}

func TestSessionReachesAPI(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	if res, _ := b.do(http.MethodGet, "/v1/agents", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("before sign-in: %d", res.StatusCode)
	}
	b.signIn(adminTok)
	csrfHdr := func(v string) map[string]string { return map[string]string{csrfHeader: v} }
	tests := []struct {
		name, method, origin, site string
		hdr                        map[string]string
		want                       int
	}{
		{"GET same origin", http.MethodGet, "", "same-origin", nil, 200},
		{"GET navigation (CSV link)", http.MethodGet, "", "none", nil, 200},
		{"GET cross-site", http.MethodGet, "http://evil.example", "cross-site", nil, 403},
		{"GET same-site other origin", http.MethodGet, "", "same-site", nil, 403},
		{"POST with CSRF", http.MethodPost, srvOrigin, "same-origin", nil, 200},
		{"POST without CSRF", http.MethodPost, srvOrigin, "same-origin", map[string]string{}, 403},
		{"POST wrong CSRF", http.MethodPost, srvOrigin, "same-origin", csrfHdr("wrong"), 403},
		{"POST cross-site with CSRF", http.MethodPost, "http://evil.example", "cross-site", nil, 403},
		{"POST other Origin, no fetch metadata", http.MethodPost, "http://evil.example", "", nil, 403},
		{"POST without Origin", http.MethodPost, "-", "", nil, 403},
		{"POST from another port", http.MethodPost, "<other-port>", "", nil, 403},
		{"POST with Origin null", http.MethodPost, "null", "", nil, 403},
		{"DELETE with CSRF", http.MethodDelete, srvOrigin, "same-origin", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.origin, b.site = tt.origin, tt.site
			switch tt.origin {
			case srvOrigin:
				b.origin = srv.URL
			case "-":
				b.origin = ""
			case "<other-port>":
				b.origin = srv.URL[:strings.LastIndexByte(srv.URL, ':')] + ":1"
			}
			hdr := tt.hdr
			if hdr == nil && tt.method != http.MethodGet {
				hdr = csrfHdr(b.csrf)
			}
			res, body := b.do(tt.method, "/v1/agents/x/suspend", "", hdr)
			if res.StatusCode != tt.want {
				t.Fatalf("%d, want %d: %s", res.StatusCode, tt.want, body)
			}
			if tt.want == 200 && !strings.Contains(body, `"auth":"Bearer `+adminTok+`"`) {
				t.Errorf("the API did not get the session's token: %s", body)
			}
			if tt.want == 403 && strings.Contains(body, "auth") {
				t.Errorf("a refused request reached the API: %s", body)
			}
		})
	}
}

const srvOrigin = "<server>"

func TestReadOnlySessionRefusedByAPI(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	b.signIn(readOnlyTok)
	if _, body := b.do(http.MethodGet, "/ui/session", "", nil); !strings.Contains(body, `"read_only":true`) {
		t.Errorf("whoami: %s", body)
	}
	res, body := b.do(http.MethodPost, "/v1/agents/x/suspend", "", map[string]string{csrfHeader: b.csrf})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("read-only change: %d %s", res.StatusCode, body)
	}
}

func TestBearerPassesThrough(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	b.origin, b.site = "", ""
	res, body := b.do(http.MethodPost, "/v1/agents", "", map[string]string{"Authorization": "Bearer cra_other"})
	if res.StatusCode != 200 || !strings.Contains(body, "Bearer cra_other") {
		t.Errorf("bearer request: %d %s", res.StatusCode, body)
	}
}

func TestSignOut(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	b.signIn(adminTok)
	if res, _ := b.do(http.MethodDelete, "/ui/session", "", nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without CSRF: %d, want 403", res.StatusCode)
	}
	if res, _ := b.do(http.MethodDelete, "/ui/session", "", map[string]string{csrfHeader: b.csrf}); res.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d", res.StatusCode)
	}
	if res, _ := b.do(http.MethodGet, "/ui/session", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("whoami after sign-out: %d", res.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, err := New(Options{API: stubAPI, Tokens: stubTokens{}, Events: &stubEvents{}, SessionTTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b := newBrowser(t, srv)
	b.signIn(adminTok)
	if res, _ := b.do(http.MethodGet, "/v1/agents", "", nil); res.StatusCode != 200 {
		t.Fatalf("fresh session: %d", res.StatusCode)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if res, _ := b.do(http.MethodGet, "/v1/agents", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired session: %d, want 401", res.StatusCode)
	}
}

func TestAssets(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	for path, want := range map[string]string{"/": "text/html", "/assets/app.js": "javascript", "/assets/merkle.js": "javascript", "/assets/style.css": "text/css"} {
		res, body := b.do(http.MethodGet, path, "", nil)
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), want) || body == "" {
			t.Errorf("%s: %d %q", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		if !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no CSP", path)
		}
	}
	if res, _ := b.do(http.MethodGet, "/assets/nope.js", "", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("missing asset: %d", res.StatusCode)
	}
	// A path outside the dashboard is the API's.
	if _, body := b.do(http.MethodGet, "/elsewhere", "", nil); !strings.Contains(body, "unauthorized") {
		t.Errorf("/elsewhere did not reach the API: %s", body)
	}
}

func TestStream(t *testing.T) {
	srv, evs := newServer(t, false)
	evs.add("old")
	b := newBrowser(t, srv)
	if res, _ := b.do(http.MethodGet, "/ui/events", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without a session: %d", res.StatusCode)
	}
	b.signIn(adminTok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(res.Body)
	// The stream starts at the tree's end: the old event is not sent.
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q", line)
	}
	evs.add("new")
	var got []string
	for len(got) < 3 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v (got %q)", err, got)
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ":") {
			got = append(got, line)
		}
	}
	if got[0] != "id: 1" || got[1] != "event: ledger" || !strings.Contains(got[2], `"resource":"new"`) || !strings.Contains(got[2], `"amount":"0.10"`) {
		t.Errorf("stream sent %q", got)
	}
}

func TestStreamResumesAfterLastEventID(t *testing.T) {
	srv, evs := newServer(t, false)
	evs.add("a")
	evs.add("b")
	evs.add("c")
	b := newBrowser(t, srv)
	b.signIn(adminTok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	req.Header.Set("Last-Event-ID", "0")
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "id: ") {
			if line != "id: 1\n" {
				t.Errorf("first event after Last-Event-ID 0: %q, want id 1", line)
			}
			return
		}
	}
}

func TestStreamEndsAtSignOut(t *testing.T) {
	srv, _ := newServer(t, false)
	b := newBrowser(t, srv)
	b.signIn(adminTok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q", line)
	}
	if res, _ := b.do(http.MethodDelete, "/ui/session", "", map[string]string{csrfHeader: b.csrf}); res.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d", res.StatusCode)
	}
	// The server ends the stream: the body reaches EOF before the deadline.
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatalf("the stream did not end after sign-out: %v", err)
	}
}

func TestStreamEndsAtStop(t *testing.T) {
	stop := make(chan struct{})
	srv, _ := newServerStop(t, false, stop)
	b := newBrowser(t, srv)
	b.signIn(adminTok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q", line)
	}
	close(stop)
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatalf("the stream did not end when the server stopped: %v", err)
	}
}
