package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Cookie and header names. The session cookie is HttpOnly and holds only
// a random session ID: the admin token stays in this process's memory.
// The CSRF cookie is readable by the page, which echoes it in the CSRF
// header (double submit); the server compares both with the session's.
const (
	sessionCookie = "caracal_session"
	csrfCookie    = "caracal_csrf"
	csrfHeader    = "X-CSRF-Token"
)

// session is one signed-in browser.
type session struct {
	token    string
	identity Identity
	csrf     string
	expires  time.Time
}

// sessions is the server-side session map. Sessions live in memory only:
// a restart signs everyone out, which is acceptable for an admin console
// and keeps tokens off disk.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, now: now}
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(token string, id Identity) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.m { // drop expired sessions as new ones come
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	sid := randomID()
	ss := &session{token: token, identity: id, csrf: randomID(), expires: now.Add(s.ttl)}
	s.m[sid] = ss
	return sid, ss
}

func (s *sessions) get(sid string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[sid]
	if !ok {
		return nil, false
	}
	if !s.now().Before(ss.expires) {
		delete(s.m, sid)
		return nil, false
	}
	return ss, true
}

func (s *sessions) remove(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sid)
}

// problem writes an RFC 9457 problem in the API's shape.
func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://caracal.dev/problems/" + code, "title": http.StatusText(status),
		"status": status, "detail": detail, "code": code,
	})
}

// sameOrigin reports whether r comes from a page of this server. Browsers
// send Origin on every POST, PUT, PATCH and DELETE (and on cross-origin
// GETs), and Sec-Fetch-Site on every request; a request with neither is
// not from a current browser's page of another site.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	// The host and port must be this server's. The scheme is not compared:
	// one host and port serve one scheme, and behind a proxy that ends TLS
	// the page's https origin reaches this server over plain HTTP.
	return strings.EqualFold(u.Host, r.Host)
}

// fromSession returns the request's valid session, if any.
func (h *Handler) fromSession(r *http.Request) (string, *session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", nil, false
	}
	ss, ok := h.sessions.get(c.Value)
	return c.Value, ss, ok
}

// csrfOK checks the double-submitted CSRF token: the header must equal
// both the CSRF cookie and the session's token.
func csrfOK(r *http.Request, ss *session) bool {
	hv := r.Header.Get(csrfHeader)
	c, err := r.Cookie(csrfCookie)
	if hv == "" || err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hv), []byte(ss.csrf)) == 1 &&
		subtle.ConstantTimeCompare([]byte(c.Value), []byte(ss.csrf)) == 1
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

type sessionView struct {
	Identity
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

func (h *Handler) setCookies(w http.ResponseWriter, r *http.Request, sid, csrf string, maxAge int) {
	secure := r.TLS != nil
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: csrf, Path: "/", MaxAge: maxAge,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}

// signIn takes {"token": "cra_…"} and starts a session.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	// Sign-in is a change too: a page of another site must not sign a
	// browser in under the attacker's token.
	if !sameOrigin(r) {
		problem(w, http.StatusForbidden, "forbidden", "cross-origin request refused")
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "invalid_request", "body: want {\"token\": \"cra_…\"}")
		return
	}
	id, err := h.opts.Tokens.CheckAdminToken(r.Context(), strings.TrimSpace(body.Token))
	if errors.Is(err, ErrBadToken) {
		problem(w, http.StatusUnauthorized, "unauthorized", "unknown, revoked or malformed admin token")
		return
	}
	if err != nil {
		h.log.Error("dashboard sign-in: token check failed", "err", err)
		problem(w, http.StatusServiceUnavailable, "unavailable", "the token could not be checked; try again")
		return
	}
	sid, ss := h.sessions.create(strings.TrimSpace(body.Token), id)
	h.setCookies(w, r, sid, ss.csrf, int(h.opts.SessionTTL.Seconds()))
	h.log.Info("dashboard sign-in", "token", id.Name, "read_only", id.ReadOnly)
	writeJSON(w, http.StatusOK, sessionView{Identity: id, CSRF: ss.csrf, Expires: ss.expires})
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request) {
	_, ss, ok := h.fromSession(r)
	if !ok {
		problem(w, http.StatusUnauthorized, "unauthorized", "not signed in")
		return
	}
	writeJSON(w, http.StatusOK, sessionView{Identity: ss.identity, CSRF: ss.csrf, Expires: ss.expires})
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	sid, ss, ok := h.fromSession(r)
	if ok {
		if !sameOrigin(r) || !csrfOK(r, ss) {
			problem(w, http.StatusForbidden, "forbidden", "missing or wrong CSRF token, or cross-origin request")
			return
		}
		h.sessions.remove(sid)
	}
	h.setCookies(w, r, "", "", -1)
	w.WriteHeader(http.StatusNoContent)
}

// api passes a /v1 request to the API. A request with an Authorization
// header is the API's alone; one with the session cookie gets the
// session's token once its origin, and for a change its CSRF token, pass.
func (h *Handler) api(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		h.opts.API.ServeHTTP(w, r)
		return
	}
	if _, err := r.Cookie(sessionCookie); err != nil {
		h.opts.API.ServeHTTP(w, r) // the API answers 401
		return
	}
	_, ss, ok := h.fromSession(r)
	if !ok {
		problem(w, http.StatusUnauthorized, "unauthorized", "the dashboard session has expired or was signed out: sign in again")
		return
	}
	if !sameOrigin(r) {
		problem(w, http.StatusForbidden, "forbidden", "a session cookie is accepted only on the dashboard's own same-origin requests")
		return
	}
	if !safeMethod(r.Method) && !csrfOK(r, ss) {
		problem(w, http.StatusForbidden, "forbidden", "missing or wrong CSRF token (header "+csrfHeader+")")
		return
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+ss.token)
	h.opts.API.ServeHTTP(w, r2)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
