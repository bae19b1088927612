package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	e := newCLIEnv(t, "sqlite")
	if out := e.ok("probe", srv.URL+"/healthz"); out != srv.URL+"/healthz: 200 OK\n" {
		t.Errorf("probe of a healthy endpoint printed %q", out)
	}
	e.fails(1, "probe "+srv.URL+"/readyz: 503 Service Unavailable", "probe", srv.URL+"/readyz")
	e.fails(2, `URL: invalid URL "ftp://x": want http:// or https://`, "probe", "ftp://x")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, errOut, code := e.run("probe", closed.URL+"/healthz"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("probe of a closed port: exit %d, %s", code, errOut)
	}
}
