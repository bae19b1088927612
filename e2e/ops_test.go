package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// merkleStatus is the part of `caracal merkle status -o json` these tests read.
type merkleStatus struct {
	TreeSize int64 `json:"tree_size"`
	Pending  int64 `json:"pending_events"`
}

// caracalIn runs the binary with CARACAL_HOME=home and fails the test if it fails.
func caracalIn(t *testing.T, home string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CARACAL_HOME="+home, "GORACE=atexit_sleep_ms=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caracal %s (home %s): %v\n%s%s", strings.Join(args, " "), home, err, out, stderr.String())
	}
	return string(out)
}

// TestDBBackupUnderProxyLoadAndRestore: `caracal db backup` copies the
// SQLite database while a running `caracal proxy` charges requests; the
// copy restores into a fresh home with `caracal db restore --yes`, and the
// full Merkle verification passes there.
func TestDBBackupUnderProxyLoadAndRestore(t *testing.T) {
	e := newProxyEnv(t, "1000")

	// Load until the backup is done; started signals 20 charged requests.
	stop := make(chan struct{})
	started := make(chan struct{})
	var served atomic.Int64
	var loadErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodPost, e.url+"/openai/v1/chat/completions", strings.NewReader(chatBody))
			req.Header.Set("Authorization", "Bearer "+e.key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				loadErr = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				loadErr = fmt.Errorf("chat under load: %s", resp.Status)
				return
			}
			if served.Add(1) == 20 {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(time.Minute):
		close(stop)
		wg.Wait()
		t.Fatalf("load did not reach 20 requests: %v\n%s", loadErr, e.stderr.String())
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	var res struct {
		File     string `json:"file"`
		TreeSize int64  `json:"tree_size"`
	}
	out := e.caracal("db", "backup", backup, "-o", "json")
	atBackup := served.Load()
	close(stop)
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("load: %v\n%s", loadErr, e.stderr.String())
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.File != backup {
		t.Fatalf("db backup printed %q: %v", out, err)
	}
	if after := served.Load(); after == atBackup {
		t.Logf("no request completed after the backup (%d before it)", atBackup)
	}

	fresh := t.TempDir()
	var restored struct {
		TreeSize int64 `json:"tree_size"`
	}
	out = caracalIn(t, fresh, "db", "restore", backup, "--yes", "-o", "json")
	if err := json.Unmarshal([]byte(out), &restored); err != nil || restored.TreeSize != res.TreeSize {
		t.Fatalf("db restore printed %q (%v); backup tree size %d", out, err, res.TreeSize)
	}
	if out := caracalIn(t, fresh, "merkle", "verify", "--full"); !strings.Contains(out, fmt.Sprint(res.TreeSize)) {
		t.Errorf("merkle verify --full in the restored home:\n%s", out)
	}
	var evs []ledgerEvent
	if err := json.Unmarshal([]byte(caracalIn(t, fresh, "ledger", "query", "-o", "json", "--limit", "0")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) < 20 {
		t.Errorf("the restored ledger holds %d events, want at least the 20 charged before the backup", len(evs))
	}
	for _, ev := range evs {
		if ev.Outcome != "charged" {
			t.Errorf("restored event %+v: want charged", ev)
		}
	}
}

// TestProxyGracefulExitLeavesNothingPending: after SIGTERM with streams in
// flight, the proxy integrates the events of the calls that finished while
// it drained before it exits, so `caracal merkle status` shows none pending.
func TestProxyGracefulExitLeavesNothingPending(t *testing.T) {
	e := newProxyEnvArgs(t, "100", []string{"--shutdown-timeout", "60s"})
	const n = 8
	_, wg := startStreams(t, e, n, "100ms")
	if err := e.terminate(); err != nil {
		t.Fatalf("caracal proxy exited with %v, want 0\n%s", err, e.stderr.String())
	}
	wg.Wait()
	evs := e.ledger()
	if len(evs) != n {
		t.Fatalf("ledger %+v: want %d events", evs, n)
	}
	var st merkleStatus
	if err := json.Unmarshal([]byte(e.caracal("merkle", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.TreeSize != n {
		t.Errorf("merkle status after a graceful exit %+v: want 0 pending and %d integrated\n%s", st, n, e.stderr.String())
	}
}

// mcpPost posts one JSON-RPC message to the MCP front and returns the
// response, whose body the caller reads.
func mcpPost(t *testing.T, addr, key, session, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("POST /mcp %s: %s %s", body, resp.Status, b)
	}
	return resp
}

// TestMCPFrontGracefulShutdownRecordsCallsInFlight: SIGTERM to
// `caracal mcp --listen` with two calls in flight lets the one that ends
// within --shutdown-timeout finish (charged), settles the one still
// running at the deadline as unconfirmed, exits 0 with no reservation left
// open, and leaves no event pending integration.
func TestMCPFrontGracefulShutdownRecordsCallsInFlight(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	_, key, _ := strings.Cut(h.key(), " ")
	addr := freePort(t)
	cmd := exec.Command(binary, "mcp", "--listen", addr, "--shutdown-timeout", "15s", "--name", "everything", "--", "node", everythingJS(), "stdio")
	cmd.Env = append(h.env(), "GORACE=atexit_sleep_ms=0 log_path="+filepath.Join(h.dir, "race"))
	var errOut syncBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		t.Logf("caracal mcp stderr:\n%s", tail(errOut.String(), 3000))
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caracal mcp did not listen on %s\n%s", addr, errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	resp := mcpPost(t, addr, key, "", e2eInit)
	session := resp.Header.Get("Mcp-Session-Id")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp = mcpPost(t, addr, key, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	resp.Body.Close()

	// call starts a long-running operation of secs seconds and returns a
	// channel that yields its whole response stream.
	call := func(id, secs int) <-chan string {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":%d,"steps":%d},"_meta":{"progressToken":"p%d"}}}`, id, secs, secs, id)
		out := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Session-Id", session)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out <- resp.Status + "\n" + string(b)
		}()
		return out
	}
	long := call(2, 600)
	short := call(1, 6)
	// Both calls reserved and went upstream: two allowed decisions.
	waitFor(t, "both calls to be admitted", func() bool {
		return strings.Count(errOut.String(), "outcome=allowed") == 2
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("caracal mcp exited with %v after SIGTERM, want 0\n%s", err, errOut.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("caracal mcp did not exit after SIGTERM\n%s", errOut.String())
	}
	if body := <-short; !strings.Contains(body, `"id":1`) || !strings.Contains(body, `"result"`) {
		t.Errorf("the call that ended within the shutdown timeout got %q, want its result", tail(body, 500))
	}
	<-long
	// The short call must have been in flight at SIGTERM: it was charged
	// while the process drained, not before.
	log := errOut.String()
	drain := strings.Index(log, "shutting down: no new connections")
	charged := strings.Index(log, "code=charged")
	if drain < 0 || charged < drain {
		t.Errorf("want the short call charged after the drain began:\n%s", log)
	}

	outcomes := map[string]int{}
	for _, ev := range h.events() {
		if ev.Resource != "mcp:everything/trigger-long-running-operation" || ev.Amount != "0.001" {
			t.Errorf("event %+v", ev)
		}
		outcomes[ev.Outcome]++
	}
	if outcomes["charged"] != 1 || outcomes["unconfirmed"] != 1 || len(outcomes) != 2 {
		t.Errorf("outcomes %v: want the finished call charged and the one cut off unconfirmed", outcomes)
	}
	if open := (&proxyEnv{t: t, home: h.dir}).openReservations(); open != 0 {
		t.Errorf("%d reservations left open", open)
	}
	var st merkleStatus
	if err := json.Unmarshal([]byte(h.run("merkle", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.TreeSize != 2 {
		t.Errorf("merkle status after a graceful exit %+v: want 0 pending and 2 integrated", st)
	}
}
