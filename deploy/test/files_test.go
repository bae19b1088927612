package deploytest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of a compose file these checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		User        string            `json:"user"`
		Command     []string          `json:"command"`
		EnvFile     any               `json:"env_file"`
		Environment map[string]string `json:"environment"`
		Volumes     []string          `json:"volumes"`
		Restart     string            `json:"restart"`
		ReadOnly    bool              `json:"read_only"`
		CapDrop     []string          `json:"cap_drop"`
		DependsOn   map[string]struct {
			Condition string `json:"condition"`
		} `json:"depends_on"`
		Healthcheck *struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"postgres", "migrate", "proxy", "mcp"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("compose.yaml has no service %q", name)
		}
	}
	if hc := c.Services["postgres"].Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "pg_isready") {
		t.Errorf("postgres health check = %+v", hc)
	}
	if m := c.Services["migrate"]; strings.Join(m.Command, " ") != "db migrate up" || m.Restart != "no" || m.DependsOn["postgres"].Condition != "service_healthy" {
		t.Errorf("migrate service = %+v", m)
	}
	envExample, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	signs := map[string]string{"proxy": "auto", "mcp": "never"}
	for name, wantSign := range signs {
		s := c.Services[name]
		if s.Command[0] != name || !contains(s.Command, "--listen") {
			t.Errorf("%s: command %v", name, s.Command)
		}
		// Readiness, not liveness: /readyz turns 503 when the database is
		// unreachable and during a graceful shutdown.
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 3 || s.Healthcheck.Test[1] != "caracal" || !strings.HasSuffix(s.Healthcheck.Test[len(s.Healthcheck.Test)-1], "/readyz") {
			t.Errorf("%s: health check %+v", name, s.Healthcheck)
		}
		if s.DependsOn["migrate"].Condition != "service_completed_successfully" {
			t.Errorf("%s: does not wait for the migration: %+v", name, s.DependsOn)
		}
		if s.Environment["CARACAL_MERKLE_SIGN"] != wantSign {
			t.Errorf("%s: CARACAL_MERKLE_SIGN = %q, want %q", name, s.Environment["CARACAL_MERKLE_SIGN"], wantSign)
		}
		if !strings.Contains(s.Environment["CARACAL_DATABASE_URL"], "${POSTGRES_PASSWORD") {
			t.Errorf("%s: the database password does not come from the env file: %q", name, s.Environment["CARACAL_DATABASE_URL"])
		}
	}
	for _, name := range []string{"migrate", "proxy", "mcp"} {
		s := c.Services[name]
		if uid, _, _ := strings.Cut(s.User, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("%s: runs as user %q, want a non-root numeric user", name, s.User)
		}
		if !s.ReadOnly || !contains(s.CapDrop, "ALL") {
			t.Errorf("%s: read_only %v, cap_drop %v", name, s.ReadOnly, s.CapDrop)
		}
		if s.EnvFile != ".env" {
			t.Errorf("%s: env_file %v, want .env", name, s.EnvFile)
		}
		home := ""
		for _, v := range s.Volumes {
			if src, dst, _ := strings.Cut(v, ":"); dst == "/var/lib/caracal" {
				home = src
			}
		}
		if _, ok := c.Volumes[home]; !ok {
			t.Errorf("%s: /var/lib/caracal is not a named volume: %v", name, s.Volumes)
		}
	}
	for name, s := range c.Services {
		for _, err := range unmountedPaths(s.Command, s.Environment, s.Volumes) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c.Services["proxy"].Volumes[0] == c.Services["mcp"].Volumes[0] {
		t.Error("the signer and the replica share a home volume, so the replica would hold the key")
	}
	// Every ${VAR} the compose file needs is in the env file example.
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)[:}?-]`).FindAllStringSubmatch(string(data), -1) {
		if m[1] == "CARACAL_IMAGE" || m[1] == "POSTGRES_IMAGE" {
			if m[1] == "CARACAL_IMAGE" && !strings.Contains(string(envExample), "CARACAL_IMAGE=") {
				t.Errorf(".env.example lacks CARACAL_IMAGE")
			}
			continue
		}
		if !strings.Contains(string(envExample), m[1]+"=") {
			t.Errorf(".env.example lacks %s", m[1])
		}
	}
}

// unmountedPaths returns an error for every absolute file path that a
// service's command or environment names (CARACAL_CONFIG, CARACAL_HOME,
// a --tls-cert FILE, …) and that no volume mounts: the image is scratch
// with only the binary, so such a path does not exist in the container and
// caracal exits 2. It also checks that every bind mount's source exists
// beside compose.yaml.
func unmountedPaths(command []string, env map[string]string, volumes []string) []error {
	var targets []string
	var errs []error
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			errs = append(errs, fmt.Errorf("volume %q has no target", v))
			continue
		}
		targets = append(targets, parts[1])
		if src := parts[0]; strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				errs = append(errs, fmt.Errorf("bind mount %q: %w", v, err))
			}
		}
	}
	mounted := func(p string) bool {
		for _, tgt := range targets {
			if p == tgt || strings.HasPrefix(p, strings.TrimSuffix(tgt, "/")+"/") {
				return true
			}
		}
		return false
	}
	var refs []string
	for _, a := range command {
		// --flag=/path as well as --flag /path.
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		refs = append(refs, "command argument "+a)
	}
	for k, v := range env {
		refs = append(refs, k+"="+v)
	}
	sort.Strings(refs)
	for _, r := range refs {
		p := r[strings.LastIndexAny(r, " =")+1:]
		if strings.HasPrefix(p, "/") && !mounted(p) {
			errs = append(errs, fmt.Errorf("%s names a path no volume mounts (volumes %v)", r, volumes))
		}
	}
	return errs
}

func TestUnmountedPaths(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		env     map[string]string
		volumes []string
		bad     int
	}{
		{"config not mounted", []string{"db", "migrate", "up"}, map[string]string{"CARACAL_HOME": "/var/lib/caracal", "CARACAL_CONFIG": "/etc/caracal/config.yaml"}, []string{"home:/var/lib/caracal"}, 1},
		{"config mounted", nil, map[string]string{"CARACAL_HOME": "/var/lib/caracal", "CARACAL_CONFIG": "/etc/caracal/config.yaml"}, []string{"home:/var/lib/caracal", "./config.yaml:/etc/caracal/config.yaml:ro"}, 0},
		{"file under a mounted folder", []string{"proxy", "--tls-cert=/etc/caracal/tls/tls.crt", "--tls-key", "/etc/caracal/tls/tls.key"}, nil, []string{"./config.yaml:/etc/caracal/tls:ro"}, 0},
		{"flag file not mounted", []string{"proxy", "--tls-cert", "/etc/tls.crt"}, nil, []string{"home:/var/lib/caracal"}, 1},
		{"prefix is not a folder", nil, map[string]string{"CARACAL_HOME": "/var/lib/caracal2"}, []string{"home:/var/lib/caracal"}, 1},
		{"bind source missing", nil, nil, []string{"./no-such-file.yaml:/etc/x.yaml:ro"}, 1},
	} {
		if got := unmountedPaths(tc.command, tc.env, tc.volumes); len(got) != tc.bad {
			t.Errorf("%s: %d errors %v, want %d", tc.name, len(got), got, tc.bad)
		}
	}
}

// unit is a systemd unit file: section → key → values (keys may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnits(t *testing.T) {
	units := map[string]string{"caracal-proxy.service": "caracal proxy --listen", "caracal-mcp.service": "caracal mcp --listen"}
	for file, cmd := range units {
		t.Run(file, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("../systemd", file))
			for key, want := range map[string]string{
				"ProtectSystem": "strict", "NoNewPrivileges": "yes", "DynamicUser": "yes", "StateDirectory": "caracal",
				"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "", "Environment": "CARACAL_CONFIG=/etc/caracal/config.yaml",
			} {
				if got := u.get("Service", key); got != want {
					t.Errorf("[Service] %s = %q, want %q", key, got, want)
				}
			}
			if !contains(u["Service"]["Environment"], "CARACAL_HOME=/var/lib/caracal") {
				t.Errorf("CARACAL_HOME is not the state directory: %v", u["Service"]["Environment"])
			}
			if ef := u.get("Service", "EnvironmentFile"); ef != "/etc/caracal/caracal.env" {
				t.Errorf("EnvironmentFile = %q", ef)
			}
			start := u.get("Service", "ExecStart")
			if !strings.Contains(start, cmd) {
				t.Errorf("ExecStart = %q, want %q", start, cmd)
			}
			m := regexp.MustCompile(`--shutdown-timeout (\S+)`).FindStringSubmatch(start)
			if m == nil {
				t.Fatalf("ExecStart %q sets no --shutdown-timeout", start)
			}
			shutdown, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatal(err)
			}
			stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec"))
			if err != nil || stop <= shutdown {
				t.Errorf("TimeoutStopSec = %q, want more than --shutdown-timeout %s", u.get("Service", "TimeoutStopSec"), shutdown)
			}
			if u.get("Install", "WantedBy") != "multi-user.target" {
				t.Errorf("[Install] WantedBy = %q", u.get("Install", "WantedBy"))
			}
		})
	}
	env := parseEnvFile(t, "../systemd/caracal.env.example")
	for _, k := range []string{"CARACAL_DATABASE_URL", "CARACAL_MERKLE_SIGN"} {
		if _, ok := env[k]; !ok {
			t.Errorf("caracal.env.example lacks %s", k)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// CI installs systemd (.ci/run), so there a missing
		// systemd-analyze is a broken environment, not a reason to skip.
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but systemd-analyze is not installed: the units cannot be verified (.ci/run installs systemd)")
		}
		t.Skip("\n" + strings.Repeat("#", 72) + "\n# SKIPPED: systemd-analyze is not installed. The units were parsed but NOT\n" +
			"# verified by systemd. Install it (apt-get install -y systemd) to run this.\n" + strings.Repeat("#", 72))
	}
	// verify wants every ExecStart binary to exist: point them at true.
	dir := t.TempDir()
	var paths []string
	for file := range units {
		b, err := os.ReadFile(filepath.Join("../systemd", file))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/caracal", trueBinary(t))), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func trueBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s:%d: not KEY=VALUE: %q", path, i+1, l)
		}
		env[k] = v
	}
	return env
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
