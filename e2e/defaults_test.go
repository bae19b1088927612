package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An agent without any budget and a model without any price are refused
// by default, with their codes, and the refusals are in the ledger.
func TestProxyRefusesUnbudgetedAgentAndUnpricedModel(t *testing.T) {
	e := newProxyEnv(t, "100")
	e.caracal("agent", "register", "--name", "nobudget", "--owner", "e2e@example.com")
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(e.caracal("agent", "key", "create", "--agent", "nobudget", "-o", "json")), &k); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key, body string
		status          int
		decision        string
	}{
		{"unpriced model", e.key, `{"model":"gpt-3.5-turbo","messages":[],"max_tokens":5}`, 402, "unpriced"},
		{"agent without a budget", k.Key, `{"model":"gpt-4o","messages":[],"max_tokens":5}`, 402, "no_budget"},
		{"priced model, budgeted agent", e.key, `{"model":"gpt-4o","messages":[],"max_tokens":5}`, 200, "allowed"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", e.url+"/openai/v1/chat/completions", strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+tt.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Caracal-Decision") != tt.decision {
			t.Errorf("%s: %d %q, want %d %q: %s", tt.name, resp.StatusCode, resp.Header.Get("Caracal-Decision"), tt.status, tt.decision, b)
		}
	}
	if n := len(e.fake.Seen()); n != 1 {
		t.Errorf("provider saw %d requests, want only the admitted one", n)
	}
	denied := map[string]bool{}
	for _, ev := range e.ledger() {
		if ev.Outcome == "denied" {
			denied[ev.Code] = true
		}
	}
	if !denied["unpriced"] || !denied["no_budget"] {
		t.Errorf("ledger denials %v, want unpriced and no_budget recorded", denied)
	}
	var sum []struct {
		Key      string `json:"key"`
		Unpriced int    `json:"unpriced"`
	}
	if err := json.Unmarshal([]byte(e.caracal("ledger", "summary", "--by", "resource", "-o", "json")), &sum); err != nil {
		t.Fatal(err)
	}
	for _, r := range sum {
		if want := map[bool]int{true: 1}[r.Key == "llm:openai/gpt-3.5-turbo"]; r.Unpriced != want {
			t.Errorf("summary row %+v: unpriced %d, want %d", r, r.Unpriced, want)
		}
	}
}

// `caracal mcp` on stdio exits within 2 s of its stdin closing, even with a
// call in flight, and records that call as unconfirmed before it exits.
func TestMCPStdioExitsPromptlyWithCallInFlight(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	cmd := exec.Command(binary, "mcp", "--agent", "claude", "--name", "everything", "--", "node", everythingJS(), "stdio")
	// The race runtime otherwise sleeps a second before exiting.
	cmd.Env = append(h.env(), "GORACE=atexit_sleep_ms=0 log_path="+filepath.Join(h.dir, "race"))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	send := func(s string) {
		if _, err := io.WriteString(in, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	// waitFor reads stdout until a line containing want.
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("caracal closed stdout before %q\n%s", want, errOut.String())
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q from caracal\n%s", want, errOut.String())
			}
		}
	}
	send(e2eInit)
	waitFor(`"id":0`)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":600,"steps":600},"_meta":{"progressToken":"p1"}}}`)
	// Progress from the upstream proves the call was relayed and is running.
	waitFor(`notifications/progress`)
	closed := time.Now()
	in.Close()
	go func() {
		for range lines {
		}
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("caracal mcp exited with %v\n%s", err, errOut.String())
		}
		t.Logf("caracal mcp exited %s after stdin closed", time.Since(closed))
	case <-time.After(5 * time.Second):
		t.Fatalf("caracal mcp still running 5 s after stdin closed, waiting on its call\n%s", errOut.String())
	}
	evs := h.events()
	if len(evs) != 1 || evs[0].Resource != "mcp:everything/trigger-long-running-operation" || evs[0].Outcome != "unconfirmed" || evs[0].Amount != "0.001" {
		t.Fatalf("ledger %+v; want the call in flight recorded as unconfirmed", evs)
	}
}

// A refusal caused by the worst-case reservation says so, and how to
// reserve less.
func TestProxyWorstCaseRefusalExplainsItself(t *testing.T) {
	e := newProxyEnv(t, "0.01")
	req, _ := http.NewRequest("POST", e.url+"/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &body)
	msg := body.Error.Message
	for _, want := range []string{"(budget_exceeded)", "the worst case of this request (max_completion_tokens unset: 16,384 output tokens at", "above the 0.01 USD left", "set max_completion_tokens to reserve less"} {
		if resp.StatusCode != 402 || !strings.Contains(msg, want) {
			t.Errorf("%d %q lacks %q", resp.StatusCode, msg, want)
		}
	}
}

// A per-unit argument that is not a number is refused with
// invalid_arguments and recorded; a valid one is charged with its
// quantity and unit in the ledger.
func TestMCPPerUnitArguments(t *testing.T) {
	h := newHome(t, "5", nil)
	h.run("pricebook", "set", "mcp:weather/history", "--per-call", "0.05", "--per-unit-path", "days", "--per-unit-price", "0.01")
	s := startStdio(t, h, "--name", "weather", "--", binary, "quickstart", "example-server")
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"history","arguments":{"city":"Oslo","days":"abc"}}}`)
	r := s.response("1")
	res, _ := r["result"].(map[string]any)
	sc, _ := res["structuredContent"].(map[string]any)
	if res["isError"] != true || sc["code"] != "invalid_arguments" || !strings.Contains(sc["reason"].(string), `argument "days" must be a non-negative number`) {
		t.Fatalf("tools/call with days=abc: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"history","arguments":{"city":"Oslo","days":3}}}`)
	if r := s.response("2"); r["result"] == nil || r["result"].(map[string]any)["isError"] == true {
		t.Fatalf("tools/call with days=3: %v", r)
	}
	s.stop()
	var evs []struct {
		Outcome  string `json:"outcome"`
		Code     string `json:"code"`
		Amount   string `json:"amount"`
		Quantity string `json:"quantity"`
		Unit     string `json:"unit"`
	}
	if err := json.Unmarshal([]byte(h.run("ledger", "query", "--oldest-first", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Outcome != "denied" || evs[0].Code != "invalid_arguments" ||
		evs[1].Outcome != "charged" || evs[1].Amount != "0.08" || evs[1].Quantity != "3" || evs[1].Unit != "days" {
		t.Fatalf("ledger %+v; want an invalid_arguments denial, then 0.08 charged for 3 days", evs)
	}
}
