package e2e

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/pgtest"
)

// laxCalls returns the tools the lax server ran, in order.
func laxCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestMCPLaxUpstreamRunsOnlyMeteredCalls: in front of a server that runs
// every tools/call whatever its id, the host's good call is the only one
// that runs: an over-budget call, calls without an id and calls with id
// null never reach it, and the ledger holds one charge and one denial.
func TestMCPLaxUpstreamRunsOnlyMeteredCalls(t *testing.T) {
	log := filepath.Join(t.TempDir(), "lax.log")
	h := newHomeEnv(t, "0.015", map[string]string{"mcp:lax/*": "0.01"}, "LAX_LOG="+log)
	s := startStdio(t, h, "--name", "lax", "--", "node", filepath.Join(nodeDir, "lax-server.mjs"))
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"paid","arguments":{}}}`)
	if r := s.response("1"); r["result"] == nil || r["result"].(map[string]any)["isError"] == true {
		t.Fatalf("good call: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"paid","arguments":{}}}`)
	r := s.response("2")
	if res, _ := r["result"].(map[string]any); res["isError"] != true || !strings.Contains(strings.ToLower(toJSON(res)), "budget") {
		t.Errorf("over-budget call: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"paid","arguments":{}}}`)
	s.send(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"paid","arguments":{"again":true}}}`)
	for range 2 {
		s.send(`{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"paid","arguments":{}}}`)
		if code, msg := errorOf(s.response("null")); code != -32600 || !strings.Contains(msg, "not null") {
			t.Errorf("id null: %v %s", code, msg)
		}
	}
	// The upstream reads in order: once it answers the ping it has seen
	// everything the proxy relayed before.
	s.send(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	s.response("3")
	s.stop()
	if got := laxCalls(t, log); strings.Join(got, " ") != "paid" {
		t.Errorf("the lax upstream ran %v, want exactly one paid call", got)
	}
	ev := h.events()
	count := map[string]int{}
	for _, e := range ev {
		count[e.Outcome]++
	}
	if len(ev) != 2 || count["charged"] != 1 || count["denied"] != 1 {
		t.Errorf("ledger: %+v, want one charge and one denial", ev)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMCPReservationOutlastsMaxCallDuration: with default flags a call may
// run 15 minutes (with progress), so its reservation must not expire
// before: the expiry sweep would settle a running call as unconfirmed.
func TestMCPReservationOutlastsMaxCallDuration(t *testing.T) {
	log := filepath.Join(t.TempDir(), "lax.log")
	h := newHomeEnv(t, "5", map[string]string{"mcp:lax/*": "0.01"}, "LAX_LOG="+log)
	s := startStdio(t, h, "--name", "lax", "--", "node", filepath.Join(nodeDir, "lax-server.mjs"))
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang","arguments":{}}}`)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.dir, "caracal.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The call is relayed once its reservation is committed.
	deadline := time.Now().Add(30 * time.Second)
	for len(laxCalls(t, log)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var created, expires int64
	if err := db.QueryRow(`SELECT created_ns, expires_ns FROM reservations WHERE status = 'open'`).Scan(&created, &expires); err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(expires - created)
	if longest := 15 * time.Minute; ttl <= longest {
		t.Errorf("the reservation expires after %s; a call may run %s (--max-call-duration)", ttl, longest)
	}
}

// TestMCPHTTPFrontStoreOutage: while PostgreSQL is down, the HTTP front
// answers 503 to a key it has to look up and says nothing of the
// database; once it is back, keys work again. (A key it checked less than
// a second before is answered from its cache, as a revocation would be.)
func TestMCPHTTPFrontStoreOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	dbURL := c.URL(t)
	h := newHomeEnv(t, "5", map[string]string{"mcp:lax/*": "0.01"}, "CARACAL_DATABASE_URL="+dbURL)
	_, seen, _ := strings.Cut(h.key(), " ")
	_, unseen, _ := strings.Cut(h.key(), " ")
	addr := freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--name", "lax", "--", "node", filepath.Join(nodeDir, "lax-server.mjs"))
	key := seen
	post := func(scheme string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/mcp", strings.NewReader(e2eInit))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", scheme+" "+key)
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("bearer"); code != 200 {
		t.Errorf("lower-case bearer with the database up: %d %s", code, body)
	}
	c.Stop(t)
	key = unseen
	code, body := post("Bearer")
	if code != http.StatusServiceUnavailable {
		t.Errorf("database down: status %d, want 503: %s", code, body)
	}
	host := strings.TrimPrefix(strings.SplitN(strings.TrimPrefix(dbURL, "postgres://"), "/", 2)[0], "postgres@")
	for _, leak := range []string{host, "postgres", "user=", "127.0.0.1", "dial", "connect"} {
		if strings.Contains(body, leak) {
			t.Errorf("the client saw database details (%q): %s", leak, body)
		}
	}
	c.Start(t)
	// The pool drops connections that died with the server as it meets
	// them, so allow a few attempts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := post("Bearer")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database back: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
