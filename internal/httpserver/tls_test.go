package httpserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/testcert"
)

type testCA struct {
	*testcert.CA
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, pool: ca.Pool}
}

func (ca *testCA) leaf(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.Leaf(serial)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func replace(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := testcert.Replace(name, data); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink the server goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveTLS serves an empty handler over TLS with c on a loopback port and
// returns its address.
func serveTLS(t *testing.T, c *Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Timeouts{}, nil)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, ServeOptions{TLS: c}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// servedSerial makes a request over a new connection and returns the
// serial of the certificate the server presented.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	cl := &http.Client{Timeout: safety, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
	resp, err := cl.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("no TLS peer certificate")
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol %s, want HTTP/1.1", resp.Proto)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func writePair(t *testing.T, ca *testCA, serial int64) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c, k := ca.leaf(t, serial)
	replace(t, certFile, c)
	replace(t, keyFile, k)
	return certFile, keyFile
}

func TestCertificateReloadedWithoutRestart(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := writePair(t, ca, 100)
	var logs syncBuffer
	c, err := LoadCertificate(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.check = 0 // look at the files on every handshake
	addr := serveTLS(t, c)
	if got := servedSerial(t, addr, ca.pool); got != 100 {
		t.Fatalf("serial %d, want 100", got)
	}

	cert, key := ca.leaf(t, 200)
	replace(t, keyFile, key)
	replace(t, certFile, cert)
	if got := servedSerial(t, addr, ca.pool); got != 200 {
		t.Fatalf("after replacing the files: serial %d, want 200", got)
	}

	// A bad new certificate keeps the old one in service, and says so.
	replace(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	if got := servedSerial(t, addr, ca.pool); got != 200 {
		t.Fatalf("after a bad certificate file: serial %d, want the previous 200", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate not reloaded") {
		t.Errorf("no error logged for the bad certificate; log:\n%s", logs.String())
	}
	// A certificate that does not match the key in place is refused too.
	other, _ := ca.leaf(t, 300)
	replace(t, certFile, other)
	if got := servedSerial(t, addr, ca.pool); got != 200 {
		t.Fatalf("after a certificate not matching the key: serial %d, want the previous 200", got)
	}
	// The matching key arriving completes the pair.
	cert, key = ca.leaf(t, 400)
	replace(t, certFile, cert)
	replace(t, keyFile, key)
	if got := servedSerial(t, addr, ca.pool); got != 400 {
		t.Fatalf("after a good pair again: serial %d, want 400", got)
	}
}

func TestCertificateCheckedAtMostEveryInterval(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := writePair(t, ca, 1)
	c, err := LoadCertificate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.check = time.Hour
	cert, key := ca.leaf(t, 2)
	replace(t, keyFile, key)
	replace(t, certFile, cert)
	got, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Leaf.SerialNumber.Int64(); s != 1 {
		t.Fatalf("files re-read within the check interval: serial %d, want 1", s)
	}
	c.lastCheck = time.Now().Add(-time.Hour)
	got, err = c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Leaf.SerialNumber.Int64(); s != 2 {
		t.Fatalf("files not re-read once the interval passed: serial %d, want 2", s)
	}
}

func TestLoadCertificateErrors(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := writePair(t, ca, 1)
	_, otherKey := writePair(t, ca, 2)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", filepath.Join(t.TempDir(), "none.crt"), keyFile, "none.crt"},
		{"missing key", certFile, filepath.Join(t.TempDir(), "none.key"), "none.key"},
		{"mismatched", certFile, otherKey, "private key does not match"},
		{"swapped", keyFile, certFile, "switched"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCertificate(tc.cert, tc.key, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestTLSBelow12Refused(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := writePair(t, ca, 1)
	c, err := LoadCertificate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, c)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			_ = conn.Close()
			t.Fatalf("TLS version %x accepted", v)
		}
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 refused: %v", err)
	}
	_ = conn.Close()
}
