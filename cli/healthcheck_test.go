package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	e := newCLIEnv(t, "sqlite")
	if out := e.ok("healthcheck", srv.URL+"/healthz"); out != srv.URL+"/healthz: 200 OK\n" {
		t.Errorf("probe of a healthy endpoint printed %q", out)
	}
	e.fails(1, "healthcheck "+srv.URL+"/readyz: 503 Service Unavailable", "healthcheck", srv.URL+"/readyz")
	e.fails(2, `URL: invalid URL "ftp://x": want http:// or https://`, "healthcheck", "ftp://x")
	// HTTPS with a certificate the client does not trust: refused, unless
	// --insecure (a check of the process's own TLS listener).
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer tlsSrv.Close()
	if _, errOut, code := e.run("healthcheck", tlsSrv.URL+"/healthz"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("probe of an untrusted HTTPS endpoint: exit %d, %s", code, errOut)
	}
	if out := e.ok("healthcheck", "--insecure", tlsSrv.URL+"/healthz"); out != tlsSrv.URL+"/healthz: 200 OK\n" {
		t.Errorf("--insecure probe of an HTTPS endpoint printed %q", out)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, errOut, code := e.run("healthcheck", closed.URL+"/healthz"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("probe of a closed port: exit %d, %s", code, errOut)
	}
}
