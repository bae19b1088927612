package mcp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

// env2026 is the _meta envelope a client pinned to 2026-07-28 sends.
const env2026 = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`

// call2026 sends a 2026 tools/call with extra params (JSON members, may be "").
func (h *hostClient) call2026(id, tool, extra string) []byte {
	h.t.Helper()
	if extra != "" {
		extra = "," + extra
	}
	return h.call(id, "tools/call", fmt.Sprintf(`{"name":%q,"arguments":{"a":1}%s,%s}`, tool, extra, env2026))
}

// fake2026 is a fake upstream without a configured name, logging every
// method it receives and whether it carried the 2026 envelope.
func fake2026(t *testing.T, trusted bool, env ...string) (UpstreamSpec, string) {
	methods := filepath.Join(t.TempDir(), "methods.log")
	e := map[string]string{"CARACAL_FAKE_UPSTREAM": "1", "CARACAL_FAKE_METHODS": methods}
	for i := 0; i+1 < len(env); i += 2 {
		e[env[i]] = env[i+1]
	}
	return UpstreamSpec{Command: []string{os.Args[0]}, Env: e, Trusted: trusted}, methods
}

func readLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestAnswersCaracalWritesHaveTheRequestsRevision(t *testing.T) {
	m := newFakeMeter("0")
	h := startHost(t, Options{Meter: m})
	resp := h.call2026("1", "echo", "")
	r := gjson.GetBytes(resp, "result")
	if r.Get("resultType").String() != "complete" || !r.Get("isError").Bool() || r.Get("structuredContent.code").String() != "budget_exceeded" {
		t.Errorf("2026 budget refusal = %s; want resultType complete, isError and code budget_exceeded in structuredContent", resp)
	}
	h.init()
	resp = h.call("2", "tools/call", `{"name":"echo","arguments":{}}`)
	if gjson.GetBytes(resp, "result.resultType").Exists() || gjson.GetBytes(resp, "result.structuredContent.code").String() != "budget_exceeded" {
		t.Errorf("2025 budget refusal = %s; want no resultType", resp)
	}
}

func TestAnswersCaracalWritesOnTimeout2026(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, CallTimeout: 100e6})
	resp := h.call2026("1", "hang", "")
	if gjson.GetBytes(resp, "result.resultType").String() != "complete" || gjson.GetBytes(resp, "result.structuredContent.code").String() != "timeout" {
		t.Errorf("2026 timeout answer = %s; want resultType complete and code timeout", resp)
	}
}

func TestUpstreamNamedWithoutHandshake(t *testing.T) {
	tests := []struct {
		name      string
		env       []string
		resources []string
	}{
		{"server/discover names it", nil, []string{"mcp:fake-server/echo", "mcp:fake-server/echo"}},
		// No initialize will come: the first call is priced at once, as
		// "upstream"; its result's serverInfo names the server for the
		// next, and the failed discovery is not asked again.
		{"no discover", []string{"CARACAL_FAKE_NO_DISCOVER", "1"}, []string{"mcp:upstream/echo", "mcp:fake-server/echo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMeter("1")
			spec, methods := fake2026(t, false, tc.env...)
			h := startHost(t, Options{Meter: m}, spec)
			h.call2026("1", "echo", "")
			h.call2026("2", "echo", "")
			ev := m.waitEvents(t, 2)
			if ev[0].Resource != tc.resources[0] || ev[1].Resource != tc.resources[1] {
				t.Errorf("events %+v: want resources %q", ev, tc.resources)
			}
			got := readLines(methods)
			want := []string{"server/discover true", "tools/call true", "tools/call true"}
			if !slices.Equal(got, want) {
				t.Errorf("upstream received %q, want %q", got, want)
			}
		})
	}
}

func TestTrustedPriceDiscoveryCarriesTheHostsEnvelope(t *testing.T) {
	m := newFakeMeter("1")
	spec, methods := fake2026(t, true)
	h := startHost(t, Options{Meter: m}, spec)
	h.call2026("1", "priced", "")
	ev := m.waitEvents(t, 1)
	if ev[0].Resource != "mcp:fake-server/priced" || ev[0].Amount != money.MustParse("0.02") {
		t.Errorf("event %+v: want mcp:fake-server/priced charged its declared 0.02", ev[0])
	}
	for _, l := range readLines(methods) {
		if !strings.HasSuffix(l, " true") {
			t.Errorf("upstream received %q without the 2026 envelope", l)
		}
	}
}

func TestMRTRIsOneCall(t *testing.T) {
	tests := []struct {
		name         string
		tool         string
		limit        string
		chargeRounds bool
		answer       string // the host's answer to each input request
		want         []fakeEvent
	}{
		{"charged once on completion", "ask2", "0.01", false, "accept",
			[]fakeEvent{{Resource: "mcp:fake/ask2", Outcome: policy.OutcomeCharged, Amount: money.MustParse("0.01"), Note: "mrtr: 3 rounds"}}},
		{"a decline releases", "ask", "0.01", false, "decline",
			[]fakeEvent{{Resource: "mcp:fake/ask", Outcome: policy.OutcomeRefunded}}},
		{"charge_rounds charges every round", "ask", "1", true, "accept",
			[]fakeEvent{{Resource: "mcp:fake/ask", Outcome: policy.OutcomeCharged, Amount: money.MustParse("0.01")}, {Resource: "mcp:fake/ask", Outcome: policy.OutcomeCharged, Amount: money.MustParse("0.01")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMeter(tc.limit)
			m.chargeRounds = tc.chargeRounds
			h := startHost(t, Options{Meter: m})
			resp := h.call2026("1", tc.tool, "")
			for i := 2; gjson.GetBytes(resp, "result.resultType").String() == "input_required"; i++ {
				st := gjson.GetBytes(resp, "result.requestState").Raw
				resp = h.call2026(fmt.Sprint(i), tc.tool, `"requestState":`+st+`,"inputResponses":{"q":{"action":"`+tc.answer+`","content":{}}}`)
			}
			if r := gjson.GetBytes(resp, "result"); r.Get("resultType").String() != "complete" || r.Get("isError").Bool() {
				t.Fatalf("last round = %s; want the tool's complete result (a budget for one call covers every round)", resp)
			}
			m.waitEvents(t, len(tc.want))
			h.call2026("99", "echo", "") // a later event proves no more came
			ev := m.waitEvents(t, len(tc.want)+1)[:len(tc.want)]
			if !slices.Equal(ev, tc.want) {
				t.Errorf("events %+v, want %+v", ev, tc.want)
			}
		})
	}
}

func TestMRTRAbandonedExchangeIsReleased(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, CallTimeout: 2 * time.Second})
	resp := h.call2026("1", "ask", "")
	if gjson.GetBytes(resp, "result.resultType").String() != "input_required" {
		t.Fatalf("first round = %s, want input_required", resp)
	}
	ev := m.waitEvents(t, 1)
	if ev[0].Outcome != policy.OutcomeRefunded {
		t.Errorf("abandoned exchange settled %+v, want released", ev[0])
	}
}

func TestPricedToolsListIsPrivateAndShortLived(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m})
	resp := h.call("1", "tools/list", `{`+env2026+`}`)
	r := gjson.GetBytes(resp, "result")
	if r.Get("cacheScope").String() != "private" || r.Get("ttlMs").Int() != 1000 || r.Get("resultType").String() != "complete" {
		t.Errorf("2026 tools/list = %s; want cacheScope private and ttlMs 1000 (the upstream said public, 60000)", resp)
	}
	if !r.Get(`tools.0._meta.dev\.caracal/price`).Exists() {
		t.Errorf("tools/list not priced: %s", resp)
	}
}

func TestHTTPUpstreamSends2026Headers(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var buf [4096]byte
		n, _ := r.Body.Read(buf[:])
		id := gjson.GetBytes(buf[:n], "id").Raw
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete","content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"h"}}}}`, id)
	}))
	defer srv.Close()
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{URL: srv.URL})
	h.call("1", "tools/call", `{"name":"tëst","arguments":{},`+env2026+`}`)
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("the upstream got no request")
	}
	for _, hd := range got {
		if hd.Get("Mcp-Session-Id") != "" || hd.Get("MCP-Protocol-Version") != "2026-07-28" {
			t.Errorf("request headers %v: want MCP-Protocol-Version 2026-07-28 and no session", hd)
		}
	}
	last := got[len(got)-1]
	if last.Get("Mcp-Method") != "tools/call" || last.Get("Mcp-Name") != "=?base64?dMOrc3Q=?=" {
		t.Errorf("tools/call headers %v: want Mcp-Method tools/call and Mcp-Name in base64 form", last)
	}
}

// --max-call-duration bounds the whole exchange, not each round: the
// reservation (which outlasts the longest call) must hold until the
// exchange ends. Each wait here is shorter than --call-timeout, but the
// exchange is past --max-call-duration when the host retries the second
// time, so that retry is a new call.
func TestMRTRExchangeBoundedByMaxCallDuration(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, CallTimeout: time.Second, MaxCallDuration: time.Second})
	resp := h.call2026("1", "ask2", "")
	time.Sleep(600 * time.Millisecond)
	resp = h.call2026("2", "ask2", `"requestState":`+gjson.GetBytes(resp, "result.requestState").Raw+`,"inputResponses":{"q":{"action":"accept"}}`)
	if gjson.GetBytes(resp, "result.resultType").String() != "input_required" {
		t.Fatalf("second round = %s, want input_required", resp)
	}
	time.Sleep(700 * time.Millisecond) // 1.3 s after the first round
	h.call2026("3", "ask2", `"requestState":`+gjson.GetBytes(resp, "result.requestState").Raw+`,"inputResponses":{"q":{"action":"accept"}}`)
	ev := m.waitEvents(t, 2)
	if ev[0].Outcome != policy.OutcomeRefunded || ev[1].Outcome != policy.OutcomeCharged || ev[1].Note != "" {
		t.Errorf("events %+v: want the exchange released at --max-call-duration, then the late retry charged as a call of its own", ev)
	}
}

// A lost upstream is answered in the 2026 shape, and the restarted
// upstream serves the next 2026 call with no handshake repeated.
func TestUpstreamLost2026(t *testing.T) {
	m := newFakeMeter("1")
	spec, methods := fake2026(t, false)
	spec.Name = "fake"
	h := startHost(t, Options{Meter: m}, spec)
	r := h.call2026("1", "crash", "")
	if gjson.GetBytes(r, "result.resultType").String() != "complete" || gjson.GetBytes(r, "result.structuredContent.code").String() != "upstream_lost" {
		t.Fatalf("crash answered with %s", r)
	}
	r = h.call2026("2", "echo", "")
	if gjson.GetBytes(r, "result.isError").Bool() || gjson.GetBytes(r, "result.resultType").String() != "complete" {
		t.Fatalf("call after restart: %s", r)
	}
	if got := readLines(methods); !slices.Equal(got, []string{"tools/call true", "tools/call true"}) {
		t.Errorf("upstream received %q, want the two calls and no initialize", got)
	}
}
