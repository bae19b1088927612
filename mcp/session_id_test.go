package mcp

import (
	"context"
	"testing"
)

// idConn is an upstreamConn that only reports a session id.
type idConn struct{ sid string }

func (c idConn) send(context.Context, []byte) error { return nil }
func (c idConn) close() error                       { return nil }
func (c idConn) sessionID() string                  { return c.sid }

// The front names an HTTP session after its single upstream's session id,
// whatever kind of connection reports it.
func TestUpstreamSessionIDFromConn(t *testing.T) {
	one := func(c upstreamConn) []*upstream { return []*upstream{{conn: c}} }
	tests := []struct {
		name string
		ups  []*upstream
		want string
	}{
		{"single upstream with a session id", one(idConn{"up-7"}), "up-7"},
		{"single upstream without one", one(idConn{}), ""},
		{"stdio upstream", one(&stdioConn{}), ""},
		{"several upstreams", []*upstream{{conn: idConn{"a"}}, {conn: idConn{"b"}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{ups: tc.ups}
			if got := s.upstreamSessionID(); got != tc.want {
				t.Fatalf("upstreamSessionID() = %q, want %q", got, tc.want)
			}
		})
	}
}
