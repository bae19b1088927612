package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// repeatedKey returns the first key an object holds twice, at any depth
// (encoding/json would keep only the last), or "".
func repeatedKey(line []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var walk func() (string, error)
	walk = func() (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return "", err
				}
				key := k.(string)
				if seen[key] {
					return key, nil
				}
				seen[key] = true
				if dup, err := walk(); dup != "" || err != nil {
					return dup, err
				}
			}
			_, err = dec.Token()
			return "", err
		case json.Delim('['):
			for dec.More() {
				if dup, err := walk(); dup != "" || err != nil {
					return dup, err
				}
			}
			_, err = dec.Token()
			return "", err
		}
		return "", nil
	}
	return walk()
}

func TestRepeatedKeyDetector(t *testing.T) {
	for line, want := range map[string]string{
		`{"a":1,"b":{"c":2}}`:                 "",
		`{"component":"mcp","component":"x"}`: "component",
		`{"a":{"b":1,"b":2}}`:                 "b",
		`{"a":[{"c":1},{"c":1,"c":2}]}`:       "c",
	} {
		got, err := repeatedKey([]byte(line))
		if err != nil || got != want {
			t.Errorf("repeatedKey(%s) = %q, %v; want %q", line, got, err, want)
		}
	}
}

// TestMCPLogLinesRepeatNoKey: every JSON log line of a `caracal mcp` run,
// the integrator's included, holds each key once.
func TestMCPLogLinesRepeatNoKey(t *testing.T) {
	h := newHome(t, "5", map[string]string{"mcp:everything/echo": "0.01"})
	s := startStdio(t, h, "--name", "everything", "--log-format", "json", "--log-level", "debug", "--", "node", everythingJS(), "stdio")
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`)
	if r := s.response("1"); r["error"] != nil {
		t.Fatalf("tools/call: %v", r)
	}
	s.stop()
	components := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(s.errOut.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // an upstream's own stderr
		}
		dup, err := repeatedKey([]byte(line))
		if err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		if dup != "" {
			t.Errorf("log line repeats %q: %s", dup, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err == nil {
			components[fmt.Sprint(m["component"])] = true
		}
	}
	// The run must have logged from the integrator and the proxy, or the
	// check above proves nothing.
	for _, c := range []string{"integrator", "mcp"} {
		if !components[c] {
			t.Errorf("no log line with component=%s in:\n%s", c, s.errOut.String())
		}
	}
}
