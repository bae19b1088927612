package mcp

import "path/filepath"

// Monitor is told of upstream and session lifecycle events, for metrics
// and readiness. Its methods are called from the proxy's goroutines and
// must be quick and safe for concurrent use. Upstreams are named by their
// configured name, or for a single unnamed stdio upstream by its command's
// base name.
type Monitor interface {
	// UpstreamStarted reports a stdio upstream's first process running.
	UpstreamStarted(name string)
	// UpstreamDown reports a stdio upstream's process exiting unexpectedly.
	UpstreamDown(name string)
	// UpstreamRestarted reports a new process running after UpstreamDown.
	UpstreamRestarted(name string)
	// SessionOpened and SessionClosed bracket a stdio front's session.
	// The HTTP front's sessions are counted by HTTPFront.Sessions.
	SessionOpened()
	SessionClosed()
}

// monitorName is how Monitor names the upstream.
func (s UpstreamSpec) monitorName() string {
	if s.Name != "" || len(s.Command) == 0 {
		return s.Name
	}
	return filepath.Base(s.Command[0])
}

func (s UpstreamSpec) upstreamStarted() {
	if s.monitor != nil {
		s.monitor.UpstreamStarted(s.monitorName())
	}
}

func (s UpstreamSpec) upstreamDown() {
	if s.monitor != nil {
		s.monitor.UpstreamDown(s.monitorName())
	}
}

func (s UpstreamSpec) upstreamRestarted() {
	if s.monitor != nil {
		s.monitor.UpstreamRestarted(s.monitorName())
	}
}

func (p *Proxy) sessionOpened() {
	if p.opts.Monitor != nil {
		p.opts.Monitor.SessionOpened()
	}
}

func (p *Proxy) sessionClosed() {
	if p.opts.Monitor != nil {
		p.opts.Monitor.SessionClosed()
	}
}

// Sessions is how many HTTP sessions the front holds open.
func (f *HTTPFront) Sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// withMonitor returns a copy of specs that report to m.
func withMonitor(specs []UpstreamSpec, m Monitor) []UpstreamSpec {
	out := make([]UpstreamSpec, len(specs))
	for i, s := range specs {
		s.monitor = m
		out[i] = s
	}
	return out
}
