package mcp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caracal-dev/caracal/interpose"
)

// IsLoopback reports whether a listen address (host:port) binds only to
// the loopback interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return IsLoopback(host)
}

func jsonError(w http.ResponseWriter, status int, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorResponse("", code, msg))
}

// checkOrigin guards against DNS rebinding: a browser page on another site
// must not reach a local server through a name that resolves to it.
func (f *HTTPFront) checkOrigin(r *http.Request) error {
	host := r.Host
	ok := false
	for _, h := range f.o.AllowedHosts {
		if strings.EqualFold(h, host) || strings.EqualFold(h, hostOnly(host)) {
			ok = true
		}
	}
	if !ok {
		if IsLoopback(f.o.ListenAddr) {
			ok = isLoopbackHost(host)
		} else {
			ok = true // reached over the network: the key is the guard
		}
	}
	if !ok {
		return fmt.Errorf("host %q is not allowed", host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	for _, o := range f.o.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return nil
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not allowed", origin)
	}
	if isLoopbackHost(u.Host) && isLoopbackHost(host) {
		return nil
	}
	if strings.EqualFold(u.Host, host) {
		return nil
	}
	return fmt.Errorf("origin %q is not allowed", origin)
}

func hostOnly(h string) string {
	if x, _, err := net.SplitHostPort(h); err == nil {
		return x
	}
	return h
}

// errStoreUnavailable is why a request got 503: the key could not be checked.
var errStoreUnavailable = errors.New("the agent key cannot be checked right now; the request was not relayed")

// agent returns the agent a request acts for, or the HTTP status and error
// to refuse it with.
func (f *HTTPFront) agent(r *http.Request) (string, int, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if f.o.DefaultAgentID != "" {
			return f.o.DefaultAgentID, 0, nil
		}
		return "", http.StatusUnauthorized, errors.New("missing Authorization: Bearer <agent key>")
	}
	key, ok := interpose.BearerToken(auth)
	if !ok {
		return "", http.StatusUnauthorized, errors.New("the Authorization header must be Bearer <agent key>")
	}
	if f.o.Auth == nil {
		return "", http.StatusUnauthorized, errors.New("agent keys are not accepted here")
	}
	a, err := f.o.Auth.Authenticate(r.Context(), key)
	switch {
	case err == nil:
		return a.ID, 0, nil
	case errors.Is(err, interpose.ErrUnknownKey), errors.Is(err, interpose.ErrKeyRevoked),
		errors.Is(err, interpose.ErrKeyExpired), errors.Is(err, interpose.ErrAgentSuspended):
		return "", http.StatusUnauthorized, err
	}
	// Anything else is the store failing. Its error can name the
	// database's address and user: it goes to the log, not the client.
	f.p.log.Error("HTTP front: authenticating an agent key failed", "err", err)
	return "", http.StatusServiceUnavailable, errStoreUnavailable
}

func (f *HTTPFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f.checkOrigin(r); err != nil {
		jsonError(w, http.StatusForbidden, codeInvalidRequest, "Forbidden: "+err.Error())
		return
	}
	agentID, status, err := f.agent(r)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
		jsonError(w, status, codeInternalError, "Service Unavailable: "+err.Error())
		return
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="caracal"`)
		jsonError(w, http.StatusUnauthorized, codeInvalidRequest, "Unauthorized: "+err.Error())
		return
	}
	switch r.Method {
	case http.MethodPost:
		f.post(w, r, agentID)
	case http.MethodGet:
		f.getStream(w, r, agentID)
	case http.MethodDelete:
		h, ok := f.session(w, r, agentID)
		if !ok {
			return
		}
		f.mu.Lock()
		delete(f.sessions, h.id)
		f.mu.Unlock()
		h.close()
		w.WriteHeader(http.StatusOK)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		jsonError(w, http.StatusMethodNotAllowed, codeInvalidRequest, "Method not allowed")
	}
}

// session finds the request's session; it writes the error response if
// there is none.
func (f *HTTPFront) session(w http.ResponseWriter, r *http.Request, agentID string) (*httpSession, bool) {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		jsonError(w, http.StatusBadRequest, codeInvalidRequest, "Bad Request: missing Mcp-Session-Id header")
		return nil, false
	}
	f.mu.Lock()
	h := f.sessions[id]
	f.mu.Unlock()
	if h == nil {
		jsonError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return nil, false
	}
	if h.agentID != agentID {
		jsonError(w, http.StatusForbidden, codeInvalidRequest, "Forbidden: the session belongs to another agent")
		return nil, false
	}
	h.touch()
	return h, true
}
