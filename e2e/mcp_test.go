package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// home is one test's CARACAL_HOME with an agent "claude" and a pricebook.
type home struct {
	t     *testing.T
	dir   string
	extra []string // more environment, e.g. CARACAL_DATABASE_URL
}

// newHome runs `caracal init`, registers agent claude with a total budget
// of limit USD, and prices mcp:<server>/* per prices (resource → per call).
func newHome(t *testing.T, limit string, prices map[string]string) *home {
	t.Helper()
	return newHomeEnv(t, limit, prices)
}

// newHomeEnv is newHome with extra environment for every command.
func newHomeEnv(t *testing.T, limit string, prices map[string]string, extra ...string) *home {
	t.Helper()
	h := &home{t: t, dir: t.TempDir(), extra: extra}
	// The binary is built with -race: any report lands in these files.
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(h.dir, "race.*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			t.Errorf("caracal reported a data race:\n%s", b)
		}
	})
	h.run("init")
	h.run("agent", "register", "--name", "claude", "--owner", "e2e@example.com")
	h.run("policy", "create", "--agent", "claude", "--limit", limit, "--window", "total")
	for res, p := range prices {
		h.run("pricebook", "set", res, "--per-call", p)
	}
	return h
}

func (h *home) env() []string {
	env := append(os.Environ(), "CARACAL_HOME="+h.dir, "GORACE=log_path="+filepath.Join(h.dir, "race"))
	return append(env, h.extra...)
}

// run runs the binary and fails the test if it fails.
func (h *home) run(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.try(args...)
	if code != 0 {
		h.t.Fatalf("caracal %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (h *home) try(args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, args...)
	cmd.Env = h.env()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

type event struct {
	Resource string `json:"resource"`
	Amount   string `json:"amount"`
	Outcome  string `json:"outcome"`
	Code     string `json:"code"`
}

func (h *home) events() []event {
	h.t.Helper()
	var ev []event
	if err := json.Unmarshal([]byte(h.run("ledger", "query", "--oldest-first", "-o", "json")), &ev); err != nil {
		h.t.Fatal(err)
	}
	return ev
}

func (h *home) key() string {
	h.t.Helper()
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(h.run("agent", "key", "create", "--agent", "claude", "-o", "json")), &k); err != nil {
		h.t.Fatal(err)
	}
	return k.ID + " " + k.Key
}

func everythingJS() string {
	return filepath.Join(nodeDir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
}

// nodeClient runs e2e/node/mcp-client.mjs with cfg and decodes its output.
func nodeClient(t *testing.T, env []string, cfg map[string]any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "mcp-client.mjs", string(b))
	cmd.Dir = nodeDir
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcp-client.mjs: %v\nstderr:\n%s", err, errOut.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("mcp-client.mjs output: %v\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	t.Logf("client stderr:\n%s", tail(errOut.String(), 2000))
	return res
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var timeOfDay = regexp.MustCompile(`\d{1,2}:\d{2}:\d{2}\s?[AP]M`)
var sessionSuffix = regexp.MustCompile(` - SessionId [0-9a-f-]+`)
var sessionID = regexp.MustCompile(`session [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// normalize removes what legitimately differs between two runs of the same
// server: clock times in generated text and how many progress
// notifications raced ahead of the response; and the session ids an HTTP
// server mints.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, _ := json.Marshal(v)
	s := timeOfDay.ReplaceAllString(string(b), "<time>")
	s = sessionSuffix.ReplaceAllString(s, "")
	s = sessionID.ReplaceAllString(s, "session <id>")
	var out map[string]any
	_ = json.Unmarshal([]byte(s), &out)
	if p, ok := out["progress"].([]any); ok {
		if len(p) == 0 {
			t.Errorf("no progress notification reached the client")
		}
		out["progress"] = "<seen>"
	}
	return out
}

// compareTranscripts checks a proxied run against a direct one.
func compareTranscripts(t *testing.T, direct, proxied map[string]any) {
	t.Helper()
	pt := proxied["transcript"].(map[string]any)
	if miss := pt["priceCheck"].([]any); len(miss) > 0 {
		t.Errorf("tools without a price in _meta: %v", miss)
	}
	dn, pn := normalize(t, direct["transcript"]), normalize(t, pt)
	if !reflect.DeepEqual(dn, pn) {
		db, _ := json.MarshalIndent(dn, "", " ")
		pb, _ := json.MarshalIndent(pn, "", " ")
		t.Errorf("the proxied transcript differs from the direct one:\n%s", firstDiff(string(db), string(pb)))
	}
	for _, k := range []string{"logging", "roots", "sampling", "elicitation"} {
		d := direct["seen"].(map[string]any)[k].(float64)
		p := proxied["seen"].(map[string]any)[k].(float64)
		if p == 0 || (k != "logging" && d != p) {
			t.Errorf("%s: direct saw %v, proxied %v", k, d, p)
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			lo := max(0, i-3)
			return fmt.Sprintf("line %d:\ndirect:  %s\nproxied: %s\ncontext:\n%s", i, al[i], bl[i], strings.Join(bl[lo:min(len(bl), i+3)], "\n"))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(al), len(bl))
}

// checkLedger checks one charged event per call at the pricebook's price.
func checkLedger(t *testing.T, h *home, calls int) {
	t.Helper()
	ev := h.events()
	if len(ev) != calls {
		t.Fatalf("ledger holds %d events for %d calls", len(ev), calls)
	}
	for _, e := range ev {
		want := "0.001"
		if e.Resource == "mcp:everything/get-sum" {
			want = "0.002"
		}
		if e.Outcome != "charged" || e.Amount != want || !strings.HasPrefix(e.Resource, "mcp:everything/") {
			t.Errorf("event %+v, want charged %s", e, want)
		}
	}
}

var everythingPrices = map[string]string{"mcp:everything/*": "0.001", "mcp:everything/get-sum": "0.002"}

func TestMCPEverythingStdio(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	direct := nodeClient(t, os.Environ(), map[string]any{"transport": "stdio", "command": "node", "args": []string{everythingJS(), "stdio"}, "scenario": "everything"})
	proxied := nodeClient(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args":     []string{"mcp", "--agent", "claude", "--name", "everything", "--", "node", everythingJS(), "stdio"},
		"scenario": "everything", "expectPrice": true})
	compareTranscripts(t, direct, proxied)
	checkLedger(t, h, int(proxied["calls"].(float64)))
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs a long-lived process until the test ends and waits
// until addr accepts connections.
func startProcess(t *testing.T, env []string, addr string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		t.Logf("%s stderr:\n%s", filepath.Base(name), tail(errOut.String(), 3000))
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s:\n%s", name, addr, errOut.String())
}

func TestMCPEverythingHTTPFront(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	_, key, _ := strings.Cut(h.key(), " ")
	addr := freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--name", "everything", "--", "node", everythingJS(), "stdio")
	direct := nodeClient(t, os.Environ(), map[string]any{"transport": "stdio", "command": "node", "args": []string{everythingJS(), "stdio"}, "scenario": "everything"})
	proxied := nodeClient(t, os.Environ(), map[string]any{"transport": "http", "url": "http://" + addr + "/mcp",
		"headers": map[string]string{"Authorization": "Bearer " + key}, "scenario": "everything", "expectPrice": true})
	compareTranscripts(t, direct, proxied)
	checkLedger(t, h, int(proxied["calls"].(float64)))
}

func TestMCPEverythingHTTPUpstream(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	startProcess(t, append(os.Environ(), "PORT="+port), addr, "node", everythingJS(), "streamableHttp")
	url := "http://" + addr + "/mcp"
	direct := nodeClient(t, os.Environ(), map[string]any{"transport": "http", "url": url, "scenario": "everything"})
	proxied := nodeClient(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args":     []string{"mcp", "--agent", "claude", "--name", "everything", "--upstream-url", url},
		"scenario": "everything", "expectPrice": true})
	compareTranscripts(t, direct, proxied)
	checkLedger(t, h, int(proxied["calls"].(float64)))
}

func TestMCPBudgetRefusesSixthCall(t *testing.T) {
	h := newHome(t, "0.05", map[string]string{"mcp:everything/echo": "0.01"})
	log := filepath.Join(t.TempDir(), "calls.log")
	res := nodeClient(t, append(h.env(), "TEE_LOG="+log), map[string]any{"transport": "stdio", "command": binary,
		"args":     []string{"mcp", "--agent", "claude", "--name", "everything", "--", "node", filepath.Join(nodeDir, "tee-server.mjs"), "node", everythingJS(), "stdio"},
		"scenario": "calls", "tool": "echo", "toolArgs": map[string]any{"message": "hi"}, "n": 6})
	results := res["results"].([]any)
	for i, r := range results {
		rm := r.(map[string]any)
		isErr, _ := rm["isError"].(bool)
		if isErr != (i == 5) {
			t.Errorf("call %d: isError %v: %v", i+1, isErr, rm)
		}
		if i == 5 {
			sc, _ := rm["structuredContent"].(map[string]any)
			meta, _ := rm["_meta"].(map[string]any)
			dec, _ := meta["dev.caracal/decision"].(map[string]any)
			if sc["code"] != "budget_exceeded" || dec["code"] != "budget_exceeded" || sc["price"] != "0.01" {
				t.Errorf("6th call: %v", rm)
			}
		}
	}
	b, _ := os.ReadFile(log)
	if n := len(strings.Fields(string(b))); n != 5 {
		t.Errorf("the upstream received %d calls, want 5", n)
	}
	ev := h.events()
	var charged, denied int
	for _, e := range ev {
		switch e.Outcome {
		case "charged":
			charged++
		case "denied":
			denied++
			if e.Code != "budget_exceeded" && e.Code != "" {
				t.Errorf("denial code %s", e.Code)
			}
		}
	}
	if charged != 5 || denied != 1 || len(ev) != 6 {
		t.Errorf("ledger: %d charged, %d denied, %d events", charged, denied, len(ev))
	}
}

func TestMCPConcurrentCallsNeverOverspend(t *testing.T) {
	h := newHome(t, "0.30", map[string]string{"mcp:everything/echo": "0.01"})
	res := nodeClient(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args":     []string{"mcp", "--agent", "claude", "--name", "everything", "--", "node", everythingJS(), "stdio"},
		"scenario": "concurrent", "tool": "echo", "toolArgs": map[string]any{"message": "hi"}, "n": 64})
	ok := 0
	for _, r := range res["results"].([]any) {
		if isErr, _ := r.(map[string]any)["isError"].(bool); !isErr {
			ok++
		}
	}
	if ok != 30 {
		t.Errorf("%d calls admitted, want 30", ok)
	}
	var sum int64
	for _, e := range h.events() {
		if e.Outcome == "charged" {
			var whole, frac int64
			fmt.Sscanf(strings.Replace(e.Amount, ".", " ", 1), "%d %d", &whole, &frac)
			sum += frac // amounts are 0.01: hundredths
		}
	}
	if sum != 30 {
		t.Errorf("charged %d hundredths, want 30", sum)
	}
}

// stdioSession drives `caracal mcp` over raw stdio lines.
type stdioSession struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
	cmd   *exec.Cmd
	once  sync.Once
	stop  func()
	// errOut is caracal's stderr; read it only after stop.
	errOut *bytes.Buffer
}

func startStdio(t *testing.T, h *home, args ...string) *stdioSession {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"mcp", "--agent", "claude"}, args...)...)
	cmd.Env = h.env()
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stdioSession{t: t, in: in, lines: make(chan string, 64), cmd: cmd, errOut: &errOut}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	s.stop = func() {
		s.once.Do(func() {
			in.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("caracal mcp did not exit after stdin closed")
			}
			t.Logf("caracal stderr:\n%s", tail(errOut.String(), 3000))
		})
	}
	t.Cleanup(s.stop)
	return s
}

func (s *stdioSession) send(line string) {
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// response returns the next message with the given id.
func (s *stdioSession) response(id string) map[string]any {
	s.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatal("caracal closed stdout")
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				s.t.Fatalf("bad line %q", l)
			}
			if b, _ := json.Marshal(m["id"]); string(b) == id && m["method"] == nil {
				return m
			}
		case <-timeout:
			s.t.Fatalf("no response %s", id)
		}
	}
}

const e2eInit = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`

func errorOf(m map[string]any) (float64, string) {
	e, _ := m["error"].(map[string]any)
	code, _ := e["code"].(float64)
	msg, _ := e["message"].(string)
	return code, msg
}

func TestMCPBadInput(t *testing.T) {
	h := newHome(t, "5", map[string]string{"mcp:crashy/*": "0.01"})
	t.Run("malformed JSON and oversize messages", func(t *testing.T) {
		s := startStdio(t, h, "--max-message-size", "2048", "--", "node", everythingJS(), "stdio")
		s.send(`{"jsonrpc":"2.0","id":1,"method":`)
		if code, msg := errorOf(s.response("null")); code != -32700 || !strings.Contains(msg, "Parse error") {
			t.Errorf("malformed line: %v %s", code, msg)
		}
		s.send(`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"` + strings.Repeat("x", 3000) + `"}}`)
		if code, msg := errorOf(s.response("2")); code != -32600 || !strings.Contains(msg, "exceeds the maximum message size of 2 KiB") {
			t.Errorf("oversize: %v %s", code, msg)
		}
		s.send(e2eInit)
		if r := s.response("0"); r["result"] == nil {
			t.Errorf("initialize after bad input: %v", r)
		}
	})
	t.Run("missing upstream command", func(t *testing.T) {
		_, errOut, code := h.try("mcp", "--agent", "claude", "--", "no-such-mcp-server-xyz", "--flag")
		if code != 2 || !strings.Contains(errOut, `caracal: upstream command "no-such-mcp-server-xyz" not found`) {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("upstream crash mid-call", func(t *testing.T) {
		s := startStdio(t, h, "--name", "crashy", "--", "node", filepath.Join(nodeDir, "crashy-server.mjs"))
		s.send(e2eInit)
		s.response("0")
		s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"crash","arguments":{}}}`)
		r := s.response("1")
		res, _ := r["result"].(map[string]any)
		if isErr, _ := res["isError"].(bool); !isErr {
			t.Fatalf("crash: %v", r)
		}
		s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ok","arguments":{}}}`)
		r = s.response("2")
		res, _ = r["result"].(map[string]any)
		if isErr, _ := res["isError"].(bool); isErr || !strings.Contains(fmt.Sprint(res["content"]), "ok") {
			t.Fatalf("call after the restart: %v", r)
		}
		s.stop() // settlements are committed by the time caracal exits
		var outcomes []string
		for _, e := range h.events() {
			if strings.HasPrefix(e.Resource, "mcp:crashy/") {
				outcomes = append(outcomes, e.Resource+"="+e.Outcome+":"+e.Amount)
			}
		}
		if strings.Join(outcomes, " ") != "mcp:crashy/crash=unconfirmed:0.01 mcp:crashy/ok=charged:0.01" {
			t.Errorf("ledger: %v", outcomes)
		}
	})
	t.Run("wrong or revoked key on the HTTP front", func(t *testing.T) {
		id, key, _ := strings.Cut(h.key(), " ")
		addr := freePort(t)
		startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--name", "everything", "--", "node", everythingJS(), "stdio")
		post := func(key string) int {
			req, _ := http.NewRequest("POST", "http://"+addr+"/mcp", strings.NewReader(e2eInit))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if c := post(key); c != 200 {
			t.Errorf("good key: %d", c)
		}
		if c := post("crk_wrong"); c != 401 {
			t.Errorf("wrong key: %d", c)
		}
		if c := post(""); c != 401 {
			t.Errorf("no key: %d", c)
		}
		h.run("agent", "key", "revoke", id)
		if c := post(key); c != 401 {
			t.Errorf("revoked key: %d", c)
		}
	})
	t.Run("keyless mode refused on a public address", func(t *testing.T) {
		_, errOut, code := h.try("mcp", "--agent", "claude", "--listen", "0.0.0.0:0", "--", "node", everythingJS(), "stdio")
		if code != 2 || !strings.Contains(errOut, "loopback") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

func TestMCPGateway(t *testing.T) {
	h := newHome(t, "5", map[string]string{"mcp:everything/*": "0.001", "mcp:crashy/*": "0.01"})
	cfg := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := fmt.Sprintf(`mcp:
  upstreams:
    - name: everything
      command: ["node", %q, "stdio"]
    - name: crashy
      command: ["node", %q]
`, everythingJS(), filepath.Join(nodeDir, "crashy-server.mjs"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStdio(t, h, "--config", cfg)
	s.send(e2eInit)
	if r := s.response("0"); fmt.Sprint(r["result"].(map[string]any)["serverInfo"]) != "map[name:caracal version:(devel)]" {
		t.Errorf("gateway initialize: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	r := s.response("1")
	names := map[string]bool{}
	for _, tool := range r["result"].(map[string]any)["tools"].([]any) {
		names[tool.(map[string]any)["name"].(string)] = true
	}
	if !names["everything__echo"] || !names["crashy__ok"] || names["echo"] {
		t.Errorf("merged tools: %v", names)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"via gateway"}}}`)
	if r := s.response("2"); !strings.Contains(fmt.Sprint(r["result"]), "Echo: via gateway") {
		t.Errorf("everything__echo: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"crashy__ok","arguments":{}}}`)
	if r := s.response("3"); !strings.Contains(fmt.Sprint(r["result"]), "ok") {
		t.Errorf("crashy__ok: %v", r)
	}
	s.send(`{"jsonrpc":"2.0","id":4,"method":"prompts/list"}`)
	if r := s.response("4"); !strings.Contains(fmt.Sprint(r["result"]), "everything__") {
		t.Errorf("prompts/list: %v", r)
	}
	s.stop()
	var got []string
	for _, e := range h.events() {
		got = append(got, e.Resource+"="+e.Amount)
	}
	if strings.Join(got, " ") != "mcp:everything/echo=0.001 mcp:crashy/ok=0.01" {
		t.Errorf("ledger: %v", got)
	}
}

// TestMCPEverythingHTTPToHTTP puts the Streamable HTTP front before a
// Streamable HTTP upstream: the host's session is the upstream's session.
func TestMCPEverythingHTTPToHTTP(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	_, key, _ := strings.Cut(h.key(), " ")
	up := freePort(t)
	_, port, _ := net.SplitHostPort(up)
	startProcess(t, append(os.Environ(), "PORT="+port), up, "node", everythingJS(), "streamableHttp")
	upURL := "http://" + up + "/mcp"
	front := freePort(t)
	startProcess(t, h.env(), front, binary, "mcp", "--listen", front, "--name", "everything", "--upstream-url", upURL)
	direct := nodeClient(t, os.Environ(), map[string]any{"transport": "http", "url": upURL, "scenario": "everything"})
	proxied := nodeClient(t, os.Environ(), map[string]any{"transport": "http", "url": "http://" + front + "/mcp",
		"headers": map[string]string{"Authorization": "Bearer " + key}, "scenario": "everything", "expectPrice": true})
	compareTranscripts(t, direct, proxied)
	checkLedger(t, h, int(proxied["calls"].(float64)))
}

// TestMCPPricedServerExample runs examples/priced-server behind caracal as
// a trusted upstream: its declared prices are charged unless the pricebook
// has a rule, which wins.
func TestMCPPricedServerExample(t *testing.T) {
	server := filepath.Join(t.TempDir(), "priced-server")
	build := exec.Command("go", "build", "-o", server, "../examples/priced-server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	h := newHome(t, "1", map[string]string{"mcp:weather/forecast": "0.003"})
	s := startStdio(t, h, "--trusted", "--", server)
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	prices := map[string]string{}
	for _, tool := range s.response("1")["result"].(map[string]any)["tools"].([]any) {
		tm := tool.(map[string]any)
		p := tm["_meta"].(map[string]any)["dev.caracal/price"].(map[string]any)
		prices[tm["name"].(string)] = fmt.Sprint(p["price"], " declared=", p["declared"] == true)
	}
	want := map[string]string{"forecast": "0.003 declared=false", "history": "0.001 declared=true", "ping": "0.00 declared=false"}
	if !reflect.DeepEqual(prices, want) {
		t.Errorf("listed prices %v, want %v", prices, want)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"history","arguments":{"city":"Oslo","days":4}}}`)
	s.response("2")
	s.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Oslo"}}}`)
	s.response("3")
	s.stop()
	var got []string
	for _, e := range h.events() {
		got = append(got, e.Resource+"="+e.Amount)
	}
	// history: 0.001 per call + 4 days × 0.0005 declared by the server.
	if strings.Join(got, " ") != "mcp:weather/history=0.003 mcp:weather/forecast=0.003" {
		t.Errorf("ledger: %v", got)
	}
}
