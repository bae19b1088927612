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
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, errOut, code := e.run("healthcheck", closed.URL+"/healthz"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("probe of a closed port: exit %d, %s", code, errOut)
	}
}
