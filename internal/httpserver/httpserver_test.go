package httpserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// safety bounds every wait for the server in these tests; reaching it
// means the server did not act, and fails the test.
const safety = 20 * time.Second

// serve starts New(h, t) on a loopback port and returns its address.
func serve(t *testing.T, h http.Handler, to Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(h, to, nil)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	return c
}

// trickle writes one byte of b every interval until b is written, the
// connection fails, or stop is closed.
func trickle(c net.Conn, b string, interval time.Duration, stop <-chan struct{}) {
	for i := range len(b) {
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
		if _, err := c.Write([]byte{b[i]}); err != nil {
			return
		}
	}
}

// waitClosed reads until the server closes the connection; it fails the
// test if the connection is still open when the safety deadline passes.
func waitClosed(t *testing.T, r io.Reader) {
	t.Helper()
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", safety)
	}
}

// readBody is a handler that reads the whole body and answers 408 when
// the read timeout cut it off.
func readBody(w http.ResponseWriter, r *http.Request) {
	_, err := io.ReadAll(r.Body)
	var bt *BodyTimeoutError
	switch {
	case errors.As(err, &bt) && errors.Is(err, os.ErrDeadlineExceeded):
		http.Error(w, err.Error(), http.StatusRequestTimeout)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		_, _ = io.WriteString(w, "read")
	}
}

func TestTricklingBodyIsCutOff(t *testing.T) {
	addr := serve(t, http.HandlerFunc(readBody), Timeouts{Read: 500 * time.Millisecond})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go trickle(c, strings.Repeat("a", 100), time.Second/10, stop)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to a trickling body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "read timeout of 500ms") {
		t.Errorf("status %d %q, want 408 naming the read timeout", resp.StatusCode, b)
	}
	waitClosed(t, br)
}

func TestTricklingHeadersAreCutOff(t *testing.T) {
	addr := serve(t, http.HandlerFunc(readBody), Timeouts{ReadHeader: 300 * time.Millisecond})
	c := dial(t, addr)
	stop := make(chan struct{})
	defer close(stop)
	go trickle(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 100)+"\r\n\r\n", time.Second/10, stop)
	waitClosed(t, c)
}

func TestIdleConnectionIsClosed(t *testing.T) {
	addr := serve(t, http.HandlerFunc(readBody), Timeouts{Idle: 300 * time.Millisecond})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	waitClosed(t, br)
}

// TestStreamOutlivesReadTimeout: a response streamed for several read
// timeouts, after a body read in time or with no body at all, is neither
// cut nor has its request context cancelled.
func TestStreamOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 6 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
			// The stream waits between events as a model's would; the
			// request must stay live across several read timeouts.
			select {
			case <-r.Context().Done():
				fmt.Fprintf(w, "data: context ended: %v\n\n", r.Context().Err())
				return
			case <-time.After(readTimeout):
			}
		}
		_, _ = io.WriteString(w, "data: done\n\n")
	}), Timeouts{Read: readTimeout})
	for _, tc := range []struct{ method, body string }{{"POST", `{"stream":true}`}, {"GET", ""}} {
		t.Run(tc.method, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, "http://"+addr+"/", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Timeout: safety}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !strings.HasSuffix(string(b), "data: 5\n\ndata: done\n\n") {
				t.Errorf("status %d, err %v, stream %q: want every event and the end", resp.StatusCode, err, b)
			}
		})
	}
}

func TestTimeoutsDefaults(t *testing.T) {
	got := Timeouts{Read: time.Second}.WithDefaults()
	want := Timeouts{ReadHeader: DefaultReadHeaderTimeout, Read: time.Second, Idle: DefaultIdleTimeout}
	if got != want {
		t.Errorf("WithDefaults = %+v, want %+v", got, want)
	}
	srv := New(http.NotFoundHandler(), Timeouts{}, nil)
	if srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.IdleTimeout != DefaultIdleTimeout || srv.WriteTimeout != 0 || srv.ReadTimeout != 0 {
		t.Errorf("server timeouts %v %v %v %v: want header and idle defaults, no write or whole-request timeout", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.WriteTimeout, srv.ReadTimeout)
	}
}
