package cli

import (
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
}

// serverFlags are the timeout flags of a command that serves HTTP.
type serverFlags struct {
	fs                     *pflag.FlagSet
	readHeader, read, idle time.Duration
}

func addServerFlags(fs *pflag.FlagSet, s *serverFlags, what string) {
	s.fs = fs
	fs.DurationVar(&s.readHeader, "read-header-timeout", httpserver.DefaultReadHeaderTimeout, "longest a client of "+what+" may take to send a request's headers")
	fs.DurationVar(&s.read, "read-timeout", httpserver.DefaultReadTimeout, "longest a client of "+what+" may take to send a request's body, once its headers are in (then 408)")
	fs.DurationVar(&s.idle, "idle-timeout", httpserver.DefaultIdleTimeout, "longest an idle keep-alive connection to "+what+" is kept open")
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
		text := strings.TrimSpace(expandEnv(x.text))
		switch {
		case (s.fs != nil && s.fs.Changed(x.flag)) || text == "":
			if x.v <= 0 {
				return t, Usagef("--%s: must be positive", x.flag)
			}
			*x.dst = x.v
		default:
			d, err := time.ParseDuration(text)
			if err != nil || d <= 0 {
				return t, Usagef("config: %s.%s: invalid duration %q: want a positive duration such as 30s", section, x.key, text)
			}
			*x.dst = d
		}
	}
	return t, nil
}
