package mcp

import (
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
)

// monitorLog records Monitor events in order.
type monitorLog struct {
	mu  sync.Mutex
	evs []string
}

func (m *monitorLog) add(s string) {
	m.mu.Lock()
	m.evs = append(m.evs, s)
	m.mu.Unlock()
}

func (m *monitorLog) UpstreamStarted(name string)   { m.add("started " + name) }
func (m *monitorLog) UpstreamDown(name string)      { m.add("down " + name) }
func (m *monitorLog) UpstreamRestarted(name string) { m.add("restarted " + name) }
func (m *monitorLog) SessionOpened()                { m.add("session opened") }
func (m *monitorLog) SessionClosed()                { m.add("session closed") }

func (m *monitorLog) events() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.evs, ", ")
}

// TestMonitorSeesUpstreamRestart: a stdio upstream that crashes is
// reported down, then restarted, by its configured name.
func TestMonitorSeesUpstreamRestart(t *testing.T) {
	mon := &monitorLog{}
	h := startHost(t, Options{Meter: newFakeMeter("1"), Monitor: mon})
	h.init()
	if got := mon.events(); got != "started fake, session opened" {
		t.Fatalf("after start: %s", got)
	}
	h.call("1", "tools/call", `{"name":"crash","arguments":{}}`)
	// The call after the crash waits for the restarted upstream.
	r := h.call("2", "tools/call", `{"name":"echo","arguments":{"after":"crash"}}`)
	if gjson.GetBytes(r, "result.isError").Bool() {
		t.Fatalf("call after restart: %s", r)
	}
	if got := mon.events(); got != "started fake, session opened, down fake, restarted fake" {
		t.Errorf("events: %s", got)
	}
}

func TestMonitorName(t *testing.T) {
	for _, tc := range []struct {
		spec UpstreamSpec
		want string
	}{
		{UpstreamSpec{Name: "fs", Command: []string{"/usr/bin/node"}}, "fs"},
		{UpstreamSpec{Command: []string{"/usr/local/bin/server-everything", "stdio"}}, "server-everything"},
		{UpstreamSpec{URL: "http://h/mcp"}, ""},
	} {
		if got := tc.spec.monitorName(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.spec, got, tc.want)
		}
	}
}
