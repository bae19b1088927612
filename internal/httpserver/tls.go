package httpserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultReloadCheck is how often, at most, the certificate files are
// looked at for a change: one stat of each file per interval, on the
// handshake that finds the interval passed.
const DefaultReloadCheck = time.Second

// Certificate serves a certificate and key read from two PEM files and
// re-reads them when either file's modification time or size changes, so
// that a renewed certificate (cert-manager, certbot, a mounted Secret) is
// served from the next handshake on without a restart. A pair that does
// not load — half written, mismatched, unreadable — leaves the previous
// certificate in service and is logged once per change.
type Certificate struct {
	certFile, keyFile string
	check             time.Duration
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	tried     [2]fileStamp // stamps of the last pair tried, loaded or not
	lastCheck time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadCertificate reads the pair and returns a Certificate that keeps it
// up to date. A pair that does not load is an error here: a listener must
// not start without a certificate.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, check: DefaultReloadCheck, log: log}
	stamps, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c.cert, c.tried, c.lastCheck = &cert, stamps, time.Now()
	return c, nil
}

func (c *Certificate) stat() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return s, fmt.Errorf("TLS file: %w", err)
		}
		s[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

// GetCertificate is the tls.Config hook: it returns the certificate in
// service, first re-reading the files if the check interval has passed
// and they changed.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.lastCheck) >= c.check {
		c.lastCheck = now
		c.reload()
	}
	return c.cert, nil
}

// reload re-reads the pair if its files differ from the last pair tried.
// Called with mu held.
func (c *Certificate) reload() {
	stamps, err := c.stat()
	if err != nil {
		// A file being replaced may be missing for an instant; say so
		// once, and keep serving.
		if c.tried != ([2]fileStamp{}) {
			c.log.Error("TLS certificate not reloaded; serving the previous one", "cert", c.certFile, "key", c.keyFile, "err", err)
			c.tried = [2]fileStamp{}
		}
		return
	}
	if stamps == c.tried {
		return
	}
	c.tried = stamps
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Error("TLS certificate not reloaded; serving the previous one", "cert", c.certFile, "key", c.keyFile, "err", err)
		return
	}
	c.cert = &cert
	c.log.Info("TLS certificate reloaded", "cert", c.certFile)
}

// TLSConfig is the server configuration for c: TLS 1.2 at least, and
// HTTP/1.1 only, since the timeouts of this package are written against
// HTTP/1.1 connections (one request at a time on each).
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// listener wraps ln so that its connections speak TLS with c. The server
// runs each handshake itself, within its read-header timeout.
func (c *Certificate) listener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, c.TLSConfig())
}
