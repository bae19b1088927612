package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyCutsOffTricklingBody: a request body trickling in one byte a
// second is cut off by the read timeout with a 408 in the provider's error
// shape, the connection is closed, and nothing is reserved or relayed.
func TestProxyCutsOffTricklingBody(t *testing.T) {
	e := newProxyEnvArgs(t, "100", []string{"--read-timeout", "2s"})
	addr := strings.TrimPrefix(e.url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Bounds the wait for the proxy: reaching it fails the test.
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":20}`
	fmt.Fprintf(c, "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, e.key, len(body))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := range len(body) {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to a trickling body: %v\n%s", err, e.stderr.String())
	}
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	if resp.StatusCode != http.StatusRequestTimeout || usageString(v, "error", "code") != "request_timeout" {
		t.Errorf("status %d %s, want 408 with code request_timeout", resp.StatusCode, b)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("the proxy kept the connection open after cutting the body off")
		}
	}
	if evs := e.ledger(); len(evs) != 0 {
		t.Errorf("a cut-off request reached the ledger: %+v", evs)
	}
	if n := len(e.fake.Seen()); n != 0 {
		t.Errorf("a cut-off request reached the provider %d times", n)
	}
}
