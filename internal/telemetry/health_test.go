package telemetry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/telemetry"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// fakeSchema is a SchemaStore whose answers the test sets.
type fakeSchema struct {
	pingErr         error
	current, latest int64
}

func (f *fakeSchema) Ping(context.Context) error { return f.pingErr }
func (f *fakeSchema) Versions(context.Context) (int64, int64, error) {
	return f.current, f.latest, nil
}

func TestReadyz(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user caracal")
	tests := []struct {
		name     string
		store    fakeSchema
		upErr    error
		draining bool
		code     int
		body     string
	}{
		{"ready", fakeSchema{current: 3, latest: 3}, nil, false, 200, `{"status":"ready"}`},
		{"store down", fakeSchema{pingErr: secret, current: 3, latest: 3}, nil, false, 503, `{"failed":"store","status":"not ready"}`},
		{"schema outdated", fakeSchema{current: 2, latest: 3}, nil, false, 503, `{"failed":"store","status":"not ready"}`},
		{"upstreams", fakeSchema{current: 3, latest: 3}, errors.New("down"), false, 503, `{"failed":"upstreams","status":"not ready"}`},
		{"draining", fakeSchema{current: 3, latest: 3}, nil, true, 503, `{"failed":"draining","status":"not ready"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := telemetry.NewReadiness()
			r.Add(telemetry.CheckStore, telemetry.StoreCheck(&tt.store))
			r.Add(telemetry.CheckUpstreams, func(context.Context) error { return tt.upErr })
			if tt.draining {
				r.SetDraining()
			}
			h := telemetry.Handler(nil, nil, r)
			code, body := scrape(t, h, "/readyz")
			if code != tt.code || strings.TrimSpace(body) != tt.body {
				t.Errorf("got %d %s, want %d %s", code, body, tt.code, tt.body)
			}
			// Liveness does not depend on readiness.
			if code, body := scrape(t, h, "/healthz"); code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
				t.Errorf("healthz %d %s", code, body)
			}
		})
	}
}

// TestReadyzRealStoreGoesAway: a closed SQLite store fails the store check
// and the answer reveals nothing of the error.
func TestReadyzRealStoreGoesAway(t *testing.T) {
	s := storetest.OpenSQLite(t)
	r := telemetry.NewReadiness()
	r.Add(telemetry.CheckStore, telemetry.StoreCheck(s))
	h := telemetry.Handler(nil, nil, r)
	if code, body := scrape(t, h, "/readyz"); code != 200 {
		t.Fatalf("open store: %d %s", code, body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := scrape(t, h, "/readyz")
	if code != 503 || strings.TrimSpace(body) != `{"failed":"store","status":"not ready"}` {
		t.Fatalf("closed store: %d %s", code, body)
	}
}

// TestHandlerPassesOtherRequests: everything but the three routes reaches
// the wrapped handler, which is how /mcp keeps its authentication while
// these routes need none.
func TestHandlerPassesOtherRequests(t *testing.T) {
	var got []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusUnauthorized)
	})
	h := telemetry.Handler(next, nil, nil)
	for _, p := range []string{"/mcp", "/metrics", "/healthz/x"} {
		if code, _ := scrape(t, h, p); code != http.StatusUnauthorized {
			t.Errorf("%s: %d", p, code)
		}
	}
	if strings.Join(got, ",") != "GET /mcp,GET /metrics,GET /healthz/x" {
		t.Errorf("passed %v", got)
	}
	if code, _ := scrape(t, h, "/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
}
