package cli

import (
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/caracal-dev/caracal/internal/httpserver"
)

// ServerTimeouts are the keys of a serving section (proxy, mcp) that bound
// how long a client may take; durations such as 30s, "" for the default.
type ServerTimeouts struct {
	ReadHeaderTimeout string `yaml:"read_header_timeout" json:"read_header_timeout,omitempty"`
	ReadTimeout       string `yaml:"read_timeout" json:"read_timeout,omitempty"`
	IdleTimeout       string `yaml:"idle_timeout" json:"idle_timeout,omitempty"`
	// ShutdownTimeout bounds how long requests in flight may run after
	// SIGTERM or SIGINT.
	ShutdownTimeout string `yaml:"shutdown_timeout" json:"shutdown_timeout,omitempty"`
}

// TLSConfig is the `tls` section: the certificate of every listener of the
// process (its HTTP front and its metrics listener).
type TLSConfig struct {
	CertFile string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file" json:"key_file,omitempty"`
}

// serverFlags are the timeout, TLS and shutdown flags of a command that
// serves HTTP.
type serverFlags struct {
	fs                     *pflag.FlagSet
	readHeader, read, idle time.Duration
	shutdown               time.Duration
	tlsCert, tlsKey        string
}

func addServerFlags(fs *pflag.FlagSet, s *serverFlags, what string) {
	s.fs = fs
	fs.DurationVar(&s.readHeader, "read-header-timeout", httpserver.DefaultReadHeaderTimeout, "longest a client of "+what+" may take to send a request's headers")
	fs.DurationVar(&s.read, "read-timeout", httpserver.DefaultReadTimeout, "longest a client of "+what+" may take to send a request's body, once its headers are in (then 408)")
	fs.DurationVar(&s.idle, "idle-timeout", httpserver.DefaultIdleTimeout, "longest an idle keep-alive connection to "+what+" is kept open")
	fs.DurationVar(&s.shutdown, "shutdown-timeout", httpserver.DefaultShutdownTimeout, "on SIGTERM or SIGINT, longest requests in flight may run before they are cut off and settled")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file, re-read when it changes; needs --tls-key (default tls.cert_file)")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key file of --tls-cert (default tls.key_file)")
}

// timeouts resolves each timeout: the flag when given, else the key of
// section in the configuration, else the default. Each must be positive.
func (s *serverFlags) timeouts(section string, c ServerTimeouts) (httpserver.Timeouts, error) {
	var t httpserver.Timeouts
	for _, x := range []struct {
		flag string
		v    time.Duration
		key  string
		text string
		dst  *time.Duration
	}{
		{"read-header-timeout", s.readHeader, "read_header_timeout", c.ReadHeaderTimeout, &t.ReadHeader},
		{"read-timeout", s.read, "read_timeout", c.ReadTimeout, &t.Read},
		{"idle-timeout", s.idle, "idle_timeout", c.IdleTimeout, &t.Idle},
	} {
		d, err := s.duration(section, x.flag, x.v, x.key, x.text)
		if err != nil {
			return t, err
		}
		*x.dst = d
	}
	return t, nil
}

// shutdownTimeout resolves --shutdown-timeout over section.shutdown_timeout.
func (s *serverFlags) shutdownTimeout(section string, c ServerTimeouts) (time.Duration, error) {
	return s.duration(section, "shutdown-timeout", s.shutdown, "shutdown_timeout", c.ShutdownTimeout)
}

// duration is the flag's value when given, else the key's, else the
// flag's default; it must be positive.
func (s *serverFlags) duration(section, flag string, v time.Duration, key, text string) (time.Duration, error) {
	text = strings.TrimSpace(expandEnv(text))
	if (s.fs != nil && s.fs.Changed(flag)) || text == "" {
		if v <= 0 {
			return 0, Usagef("--%s: must be positive", flag)
		}
		return v, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil || d <= 0 {
		return 0, Usagef("config: %s.%s: invalid duration %q: want a positive duration such as 30s", section, key, text)
	}
	return d, nil
}

// certificate loads the TLS certificate named by --tls-cert/--tls-key or
// the tls section (nil: serve plain HTTP). Each flag overrides its key;
// the pair must be whole.
func (s *serverFlags) certificate(c TLSConfig, log *slog.Logger) (*httpserver.Certificate, error) {
	cert, certSrc := c.CertFile, "tls.cert_file"
	if s.tlsCert != "" {
		cert, certSrc = s.tlsCert, "--tls-cert"
	}
	key, keySrc := c.KeyFile, "tls.key_file"
	if s.tlsKey != "" {
		key, keySrc = s.tlsKey, "--tls-key"
	}
	switch {
	case cert == "" && key == "":
		return nil, nil
	case key == "":
		return nil, Usagef("--tls-key: missing: %s is set, and TLS needs its private key too (--tls-key or tls.key_file)", certSrc)
	case cert == "":
		return nil, Usagef("--tls-cert: missing: %s is set, and TLS needs the certificate too (--tls-cert or tls.cert_file)", keySrc)
	}
	crt, err := httpserver.LoadCertificate(cert, key, log)
	if err != nil {
		return nil, Usagef("%s, %s: %v", certSrc, keySrc, err)
	}
	return crt, nil
}

// scheme is the URL scheme of a listener with cert.
func scheme(cert *httpserver.Certificate) string {
	if cert != nil {
		return "https"
	}
	return "http"
}
