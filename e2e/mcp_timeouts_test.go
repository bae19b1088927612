package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMCPFrontTimeouts: the Streamable HTTP front cuts off a request body
// trickling in one byte a second, and closes an idle keep-alive
// connection, each after its configured timeout.
func TestMCPFrontTimeouts(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	_, key, _ := strings.Cut(h.key(), " ")
	addr := freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--read-timeout", "2s", "--idle-timeout", "2s",
		"--name", "everything", "--", "node", everythingJS(), "stdio")
	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// Bounds the wait for the front: reaching it fails the test.
		if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}
	closed := func(t *testing.T, br *bufio.Reader) {
		_, err := io.Copy(io.Discard, br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("the front kept the connection open")
		}
	}
	t.Run("trickling body", func(t *testing.T) {
		c, br := dial(t)
		fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n", addr, key, len(e2eInit))
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := range len(e2eInit) {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{e2eInit[i]}); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no response to a trickling body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "read timeout of 2s") {
			t.Errorf("status %d %s, want 400 naming the read timeout", resp.StatusCode, b)
		}
		closed(t, br)
	})
	t.Run("idle connection", func(t *testing.T) {
		c, br := dial(t)
		fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer crk_wrong\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(e2eInit), e2eInit)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("status %d, close %v: want a kept-alive 401", resp.StatusCode, resp.Close)
		}
		closed(t, br)
	})
}
