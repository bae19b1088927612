package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
)

// startProxy runs `caracal proxy` with env until the test ends and returns
// its base URL and its stderr.
func startProxy(t *testing.T, env []string, args ...string) (string, *syncBuffer) {
	t.Helper()
	stderr := &syncBuffer{}
	cmd := exec.Command(binary, append([]string{"proxy", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("caracal proxy exited with %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("caracal proxy did not stop on SIGINT\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("caracal proxy did not start: %v\n%s", err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("unexpected first line %q", line)
	}
	url, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return url, stderr
}

// mustChat sends one OpenAI chat completion through a proxy as the agent key.
func mustChat(t *testing.T, base, key string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/openai/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat via %s: %s\n%s", base, resp.Status, body)
	}
}

// TestReplicaWithoutSigningKey runs two `caracal proxy` processes on one
// PostgreSQL database, only one of which holds the checkpoint signing key:
// both serve, the keyless one says once that it will not sign, every event
// of both is integrated by the signer, and the full verification passes.
func TestReplicaWithoutSigningKey(t *testing.T) {
	signer := newCLIUser(t, "postgres")
	signer.ok("init")
	signer.ok("agent", "register", "--name", "bot", "--owner", "e2e@example.com")
	var key struct {
		Key string `json:"key"`
	}
	signer.json(&key, "agent", "key", "create", "--agent", "bot")
	signer.ok("policy", "create", "--agent", "bot", "--limit", "100", "--window", "total")
	prices := filepath.Join(t.TempDir(), "prices.yaml")
	if err := os.WriteFile(prices, []byte(testPrices), 0o600); err != nil {
		t.Fatal(err)
	}
	signer.ok("pricebook", "import", prices)

	// The replica's home has no keys folder at all.
	replica := &cliUser{t: t, home: filepath.Join(t.TempDir(), "replica-home"), dbURL: signer.dbURL}
	for _, kv := range signer.env {
		if !strings.HasPrefix(kv, "CARACAL_HOME=") {
			replica.env = append(replica.env, kv)
		}
	}
	replica.env = append(replica.env, "CARACAL_HOME="+replica.home)

	fake := fakeprovider.New(fakeprovider.Options{OpenAIKey: providerOpenAIKey})
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	cfg := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("proxy:\n  providers:\n    - name: openai\n      base_url: %s\n      api_key_env: E2E_OPENAI_KEY\n", up.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(u *cliUser) []string {
		return append(append([]string{}, u.env...), "E2E_OPENAI_KEY="+providerOpenAIKey)
	}
	signerURL, signerLog := startProxy(t, env(signer), "--config", cfg)
	replicaURL, replicaLog := startProxy(t, env(replica), "--config", cfg)

	const calls = 6
	for i := 0; i < calls; i++ {
		mustChat(t, signerURL, key.Key)
		mustChat(t, replicaURL, key.Key)
	}

	var events []json.RawMessage
	signer.json(&events, "ledger", "query", "--limit", "0")
	if len(events) != 2*calls {
		t.Fatalf("ledger has %d events, want %d", len(events), 2*calls)
	}
	// The signer integrates every 200 ms; wait for the queue to drain.
	var st struct {
		TreeSize int64 `json:"tree_size"`
		Pending  int64 `json:"pending_events"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		signer.json(&st, "merkle", "status")
		if st.Pending == 0 && st.TreeSize == 2*calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("merkle status %+v: events not integrated\nsigner:\n%s\nreplica:\n%s", st, signerLog.String(), replicaLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := replica.ok("merkle", "verify", "--full"); !strings.Contains(out, "12") {
		t.Errorf("merkle verify --full from the replica's home:\n%s", out)
	}
	signer.ok("merkle", "verify", "--full")

	rl := replicaLog.String()
	if n := strings.Count(rl, "does not sign"); n != 1 {
		t.Errorf("replica logged %d 'does not sign' lines, want 1:\n%s", n, rl)
	}
	if strings.Contains(rl, "integrating events and signing") {
		t.Errorf("the keyless replica claims to sign:\n%s", rl)
	}
	if !strings.Contains(signerLog.String(), "integrating events and signing") {
		t.Errorf("the signer did not say it signs:\n%s", signerLog.String())
	}
	if bytes.Contains([]byte(rl), []byte("level=ERROR")) {
		t.Errorf("replica logged errors:\n%s", rl)
	}
}
