package mcp

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// An upstream's server-to-client request cannot reach a 2026 host: the
// gateway answers the upstream with a JSON-RPC error naming why, the host
// sees no request, and the call ends with the upstream's result. A 2025
// host still receives the request (TestGateway covers that).
func TestGatewayRefusesServerRequestsFor2026Host(t *testing.T) {
	m := newFakeMeter("1")
	dir := t.TempDir()
	legacy := fakeSpec("beta", filepath.Join(dir, "b.log"))
	legacy.Env["CARACAL_FAKE_NO_DISCOVER"] = "1"
	h := startHost(t, Options{Meter: m}, fakeSpec("alpha", filepath.Join(dir, "a.log")), legacy)
	for i, tool := range []string{"alpha__sample", "beta__sample"} {
		id := fmt.Sprint(i + 1)
		h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":%q,"arguments":{},%s}}`, id, tool, env2026))
		r, before := h.response(id)
		for _, b := range before {
			if gjson.GetBytes(b, "method").String() == "sampling/createMessage" {
				t.Errorf("%s: the sampling request reached the 2026 host: %s", tool, b)
			}
		}
		text := gjson.GetBytes(r, "result.content.0.text").String()
		if gjson.Get(text, "code").Int() != codeMethodNotFound || !strings.Contains(text, "no server-to-client requests") ||
			!strings.Contains(text, "sampling/createMessage") || gjson.GetBytes(r, "result.resultType").String() != "complete" {
			t.Errorf("%s: %s; want the upstream's result carrying the gateway's refusal", tool, r)
		}
	}
}

// listenSpec is a fake upstream named name that logs the methods it
// receives; legacy ones do not answer server/discover.
func listenSpec(t *testing.T, name string, legacy bool) (UpstreamSpec, string) {
	spec, methods := fake2026(t, false)
	spec.Name = name
	if legacy {
		spec.Env["CARACAL_FAKE_NO_DISCOVER"] = "1"
	}
	return spec, methods
}

// subscriptions/listen through the gateway: opened on every 2026 upstream,
// one merged acknowledgement, each upstream's notifications under the
// host's subscription id, the host's cancellation passed on to each, and
// the host's result once every upstream has ended its subscription.
func TestGatewayListen(t *testing.T) {
	alpha, alphaLog := listenSpec(t, "alpha", false)
	beta, betaLog := listenSpec(t, "beta", false)
	gamma, gammaLog := listenSpec(t, "gamma", true)
	h := startHost(t, Options{Meter: newFakeMeter("1")}, alpha, beta, gamma)
	subID := func(b []byte) string {
		return gjson.GetBytes(b, `params._meta.io\.modelcontextprotocol/subscriptionId`).Raw
	}

	h.send(`{"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + env2026 + `}}`)
	var acks, changes int
	for acks+changes < 3 {
		b := h.recv()
		if gjson.GetBytes(b, "id").Exists() {
			t.Fatalf("unexpected response while the subscription is open: %s", b)
		}
		if id := subID(b); id != `"sub-1"` {
			t.Errorf("notification %s: want the host's subscription id \"sub-1\"", b)
		}
		switch gjson.GetBytes(b, "method").String() {
		case "notifications/subscriptions/acknowledged":
			acks++
			if !gjson.GetBytes(b, "params.notifications.toolsListChanged").Bool() {
				t.Errorf("merged acknowledgement %s: want toolsListChanged", b)
			}
		case "notifications/tools/list_changed":
			changes++
		default:
			t.Errorf("unexpected message %s", b)
		}
	}
	if acks != 1 || changes != 2 {
		t.Errorf("%d acknowledgements and %d changes: want one merged acknowledgement and each upstream's change", acks, changes)
	}
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"sub-1"}}`)

	// A subscription every upstream ends at once (an empty filter): the
	// host gets one acknowledgement and then its result.
	h.send(`{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{},` + env2026 + `}}`)
	r, before := h.response("7")
	if gjson.GetBytes(r, "result.resultType").String() != "complete" || gjson.GetBytes(r, `result._meta.io\.modelcontextprotocol/subscriptionId`).Raw != "7" {
		t.Errorf("end of subscription = %s", r)
	}
	if len(before) != 1 || gjson.GetBytes(before[0], "method").String() != "notifications/subscriptions/acknowledged" || subID(before[0]) != "7" {
		t.Errorf("before the end: %q; want one acknowledgement for subscription 7", before)
	}
	if p := h.call("8", "ping", `{}`); !gjson.GetBytes(p, "result").Exists() {
		t.Errorf("ping = %s", p)
	}

	for _, l := range []string{alphaLog, betaLog} {
		// The cancellation is delivered aside, so it may be logged last.
		got := strings.Join(readLines(l), "|")
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(got, "notifications/cancelled") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got = strings.Join(readLines(l), "|")
		}
		if strings.Count(got, "subscriptions/listen true") != 2 || !strings.Contains(got, "notifications/cancelled") {
			t.Errorf("2026 upstream received %q: want both listens and the cancellation", got)
		}
	}
	if got := strings.Join(readLines(gammaLog), "|"); strings.Contains(got, "subscriptions/listen") {
		t.Errorf("legacy upstream received %q: want no listen", got)
	}
}
