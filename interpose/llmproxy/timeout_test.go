package llmproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

// TestTricklingBodyIsCutOff serves the proxy as `caracal proxy` does, with
// a short read timeout, and sends bodies that trickle in a byte at a time:
// a metered body is refused with 408 before anything is reserved; a body
// streamed to the provider on a per-request route is cut off, answered
// 408, and its reservation released, since the provider never received it
// whole.
func TestTricklingBodyIsCutOff(t *testing.T) {
	tests := []struct {
		name, path string
		outcome    policy.Outcome // "" for no reservation
	}{
		{"metered", "/openai/v1/chat/completions", ""},
		{"per-request route", "/openai/v1/files", policy.OutcomeRefunded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakeprovider.New(fakeprovider.Options{OpenAIKey: openAIKey, Record: true})
			up := httptest.NewServer(fake)
			t.Cleanup(up.Close)
			eng := newFakeEngine(money.MustParse("100"), testRules...)
			px, err := New(Options{Engine: eng, Providers: []Provider{{Name: "openai", BaseURL: up.URL, APIKey: openAIKey}}})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := httpserver.New(px, httpserver.Timeouts{Read: 500 * time.Millisecond}, nil)
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			body := `{"model":"gpt-4o","messages":[],"max_tokens":5}`
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer crk_good\r\nContent-Length: %d\r\n\r\n", tt.path, len(body))
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := range len(body) {
					select {
					case <-stop:
						return
					case <-time.After(time.Second / 10):
					}
					if _, err := c.Write([]byte{body[i]}); err != nil {
						return
					}
				}
			}()
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || gjson.GetBytes(b, "error.code").String() != "request_timeout" {
				t.Errorf("status %d %s, want 408 request_timeout", resp.StatusCode, b)
			}
			if !strings.Contains(gjson.GetBytes(b, "error.message").String(), "read timeout of 500ms") {
				t.Errorf("message %s does not name the read timeout", b)
			}
			waitSettled(t, eng)
			evs := eng.finished()
			switch {
			case tt.outcome == "" && len(evs) != 0:
				t.Errorf("unexpected events %+v", evs)
			case tt.outcome != "" && (len(evs) != 1 || evs[0].Outcome != tt.outcome):
				t.Errorf("events %+v, want one %s", evs, tt.outcome)
			}
		})
	}
}
