package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/testcert"
)

// tlsFiles writes a certificate for 127.0.0.1 with serial, signed by a new
// test CA, and returns the CA and the files.
func tlsFiles(t *testing.T, serial int64) (ca *testcert.CA, certFile, keyFile string) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := ca.WritePair(certFile, keyFile, serial); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile
}

// servedSerial sends req over a new TLS connection trusting only ca and
// returns the status and the serial of the certificate the server showed.
func servedSerial(t *testing.T, ca *testcert.CA, newReq func() *http.Request) (int, int64) {
	t.Helper()
	cl := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool},
		DisableKeepAlives: true,
	}}
	resp, err := cl.Do(newReq())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("no server certificate")
	}
	return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

// checkReload checks that serial 1 is served, replaces the pair with
// serial 2, and waits for new connections to be served serial 2.
func checkReload(t *testing.T, ca *testcert.CA, certFile, keyFile string, newReq func() *http.Request) {
	t.Helper()
	status, serial := servedSerial(t, ca, newReq)
	if status != http.StatusOK || serial != 1 {
		t.Fatalf("status %d, serial %d: want 200 over the certificate with serial 1", status, serial)
	}
	if err := ca.WritePair(certFile, keyFile, 2); err != nil {
		t.Fatal(err)
	}
	// The files are looked at once a second at most.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, serial = servedSerial(t, ca, newReq)
		if status != http.StatusOK {
			t.Fatalf("status %d after the certificate was replaced", status)
		}
		if serial == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %d 30 s after the files were replaced", serial)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}]}`

func TestProxyHTTPSReloadsCertificate(t *testing.T) {
	ca, certFile, keyFile := tlsFiles(t, 1)
	e := newProxyEnvArgs(t, "100", []string{"--tls-cert", certFile, "--tls-key", keyFile})
	if !strings.HasPrefix(e.url, "https://") {
		t.Fatalf("the proxy announced %s, want an https URL", e.url)
	}
	checkReload(t, ca, certFile, keyFile, func() *http.Request {
		req, _ := http.NewRequest("POST", e.url+"/openai/v1/chat/completions", strings.NewReader(chatBody))
		req.Header.Set("Authorization", "Bearer "+e.key)
		req.Header.Set("Content-Type", "application/json")
		return req
	})
	if evs := e.ledger(); len(evs) < 2 || evs[0].Outcome != "charged" {
		t.Errorf("ledger %+v: want the HTTPS requests charged", evs)
	}
}

func TestProxyTLSNeedsBothFiles(t *testing.T) {
	_, certFile, keyFile := tlsFiles(t, 1)
	// A provider, so that the proxy gets as far as its listener.
	h := newHomeEnv(t, "5", everythingPrices, "OPENAI_API_KEY=sk-e2e")
	for _, tc := range []struct {
		args    []string
		missing string
	}{
		{[]string{"--tls-cert", certFile}, "--tls-key: missing"},
		{[]string{"--tls-key", keyFile}, "--tls-cert: missing"},
	} {
		for _, cmd := range [][]string{{"proxy", "--listen", "127.0.0.1:0"}, {"mcp", "--listen", "127.0.0.1:0"}} {
			args := append(append(cmd, tc.args...), "--", "true")
			if cmd[0] == "proxy" {
				args = args[:len(args)-2]
			}
			out, errOut, code := h.try(args...)
			if code != 2 || !strings.Contains(errOut, tc.missing) {
				t.Errorf("caracal %s: exit %d, %s%s; want 2 naming %q", strings.Join(args, " "), code, out, errOut, tc.missing)
			}
		}
	}
}

func TestMCPFrontHTTPSReloadsCertificate(t *testing.T) {
	ca, certFile, keyFile := tlsFiles(t, 1)
	h := newHome(t, "5", everythingPrices)
	_, key, _ := strings.Cut(h.key(), " ")
	addr, metrics := freePort(t), freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--metrics-listen", metrics,
		"--tls-cert", certFile, "--tls-key", keyFile, "--name", "everything", "--", "node", everythingJS(), "stdio")
	checkReload(t, ca, certFile, keyFile, func() *http.Request {
		req, _ := http.NewRequest("POST", "https://"+addr+"/mcp", strings.NewReader(e2eInit))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		return req
	})
	// The metrics listener serves the same certificate.
	status, serial := servedSerial(t, ca, func() *http.Request {
		req, _ := http.NewRequest("GET", "https://"+metrics+"/healthz", nil)
		return req
	})
	if status != http.StatusOK || serial != 2 {
		t.Errorf("metrics listener: status %d, serial %d; want 200 over serial 2", status, serial)
	}
}

// stream is one streamed completion read through the proxy.
type stream struct {
	started chan struct{} // closed once the first bytes arrived
	body    string
	err     error
}

// startStreams sends n streamed completions, each with Fake-Chunk-Delay
// delay, and returns once every one has started to arrive.
func startStreams(t *testing.T, e *proxyEnv, n int, delay string) ([]*stream, *sync.WaitGroup) {
	t.Helper()
	streams := make([]*stream, n)
	var wg sync.WaitGroup
	for i := range streams {
		s := &stream{started: make(chan struct{})}
		streams[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				select {
				case <-s.started:
				default:
					close(s.started)
				}
			}()
			body := `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"stream":true}`
			req, _ := http.NewRequest("POST", e.url+"/openai/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.key)
			req.Header.Set("Fake-Chunk-Delay", delay)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				s.err = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				s.err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
				return
			}
			br := bufio.NewReader(resp.Body)
			first, err := br.ReadString('\n')
			close(s.started)
			if err != nil {
				s.err = err
				return
			}
			rest, err := io.ReadAll(br)
			s.body, s.err = first+string(rest), err
		}()
	}
	for _, s := range streams {
		select {
		case <-s.started:
		case <-time.After(time.Minute):
			t.Fatalf("streams did not start\n%s", e.stderr.String())
		}
	}
	return streams, &wg
}

// terminate sends SIGTERM and waits for the proxy to exit.
func (e *proxyEnv) terminate() error {
	e.t.Helper()
	if err := e.proc.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-e.exited:
		return e.exitErr
	case <-time.After(time.Minute):
		e.t.Fatalf("caracal proxy did not exit after SIGTERM\n%s", e.stderr.String())
		return nil
	}
}

// TestProxyShutdownLetsStreamsFinish: SIGTERM while 32 streams are
// relayed lets every one finish, whole; the process exits 0 and the ledger
// holds a charge for each, with no reservation left open.
func TestProxyShutdownLetsStreamsFinish(t *testing.T) {
	e := newProxyEnvArgs(t, "100", []string{"--shutdown-timeout", "60s"})
	const n = 32
	streams, wg := startStreams(t, e, n, "100ms")
	if err := e.terminate(); err != nil {
		t.Fatalf("caracal proxy exited with %v, want 0\n%s", err, e.stderr.String())
	}
	wg.Wait()
	for i, s := range streams {
		if s.err != nil || !strings.Contains(s.body, "data: [DONE]") {
			t.Errorf("stream %d: err %v, body %q: want a complete stream", i, s.err, s.body)
		}
	}
	if open := e.openReservations(); open != 0 {
		t.Errorf("%d reservations left open", open)
	}
	charged := 0
	for _, ev := range e.ledger() {
		if ev.Outcome == "charged" && ev.Tokens.Output == 12 {
			charged++
		} else {
			t.Errorf("event %+v: want every stream charged from its usage", ev)
		}
	}
	if charged != n {
		t.Errorf("%d streams charged, want %d", charged, n)
	}
}

// TestProxyShutdownDeadlineUnconfirmed: streams still running when the
// shutdown timeout passes are cut off and charged unconfirmed, and the
// process still exits 0.
func TestProxyShutdownDeadlineUnconfirmed(t *testing.T) {
	e := newProxyEnvArgs(t, "100", []string{"--shutdown-timeout", "1s"})
	const n = 4
	streams, wg := startStreams(t, e, n, "10s")
	if err := e.terminate(); err != nil {
		t.Fatalf("caracal proxy exited with %v, want 0\n%s", err, e.stderr.String())
	}
	wg.Wait()
	for i, s := range streams {
		if strings.Contains(s.body, "data: [DONE]") {
			t.Errorf("stream %d finished although it could not within the timeout", i)
		}
	}
	if open := e.openReservations(); open != 0 {
		t.Errorf("%d reservations left open", open)
	}
	evs := e.ledger()
	if len(evs) != n {
		t.Fatalf("ledger %+v: want %d events", evs, n)
	}
	for _, ev := range evs {
		if ev.Outcome != "unconfirmed" {
			t.Errorf("event %+v: want unconfirmed", ev)
		}
	}
}
