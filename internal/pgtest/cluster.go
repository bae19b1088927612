package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultInstallGlobs are where distributions put PostgreSQL's server
// binaries when they are not on PATH (Debian and Ubuntu, the source
// default, Red Hat, Homebrew).
var defaultInstallGlobs = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/local/pgsql/bin",
	"/usr/pgsql-*/bin",
	"/opt/homebrew/opt/postgresql*/bin",
	"/usr/local/opt/postgresql*/bin",
}

// clusterPrefix starts the name of every throwaway cluster's folder, so a
// later run can find the folders of runs that were killed.
const clusterPrefix = "caracal-pgtest-"

// staleAge is how old a cluster folder without an owner must be before a
// later run removes it; younger ones may belong to a run still starting.
const staleAge = time.Hour

// binaries are the PostgreSQL programs a cluster needs.
type binaries struct {
	initdb, pgCtl, postgres string
}

// findBinaries looks for initdb and pg_ctl in one folder on pathEnv, then in
// the highest-versioned folder matching globs. The server itself is run
// from the folder pg_ctl really lives in, as pg_ctl would.
func findBinaries(pathEnv string, globs []string) (binaries, error) {
	dirs := filepath.SplitList(pathEnv)
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		sort.Slice(m, func(i, j int) bool { return versionLess(m[j], m[i]) })
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		initdb, pgCtl := filepath.Join(d, "initdb"), filepath.Join(d, "pg_ctl")
		if !isExecutable(initdb) || !isExecutable(pgCtl) {
			continue
		}
		b := binaries{initdb: initdb, pgCtl: pgCtl}
		cands := []string{filepath.Join(d, "postgres")}
		if real, err := filepath.EvalSymlinks(pgCtl); err == nil {
			cands = append([]string{filepath.Join(filepath.Dir(real), "postgres")}, cands...)
		}
		for _, c := range cands {
			if isExecutable(c) {
				b.postgres = c
				return b, nil
			}
		}
	}
	return binaries{}, errors.New(HowTo)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// versionLess orders install folders naturally, digit runs compared as
// numbers, so /usr/lib/postgresql/9/bin sorts before /usr/lib/postgresql/15/bin.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, _ := strconv.Atoi(a[:da])
			nb, _ := strconv.Atoi(b[:db])
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

// digitRun returns the length of the run of ASCII digits s starts with.
func digitRun(s string) int {
	n := 0
	for n < len(s) && n < 9 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// Cluster is a throwaway PostgreSQL cluster in a temporary folder. The
// server runs as a child of the test binary and dies with it.
type Cluster struct {
	bin  binaries
	dir  string // holds data/, sock/, postgres.log and owner.pid
	cred *syscall.Credential

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// NewCluster starts a private cluster that only this test uses, so that it
// may Stop and Start the server without disturbing other tests. The
// cluster is removed when the test ends. It needs the local binaries; a
// server named by CARACAL_TEST_DATABASE_URL cannot be stopped by a test.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findBinaries(os.Getenv("PATH"), defaultInstallGlobs)
	if err != nil {
		t.Fatalf("pgtest: a private cluster needs PostgreSQL's initdb and pg_ctl on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.remove)
	return c
}

// startCluster creates, initialises and starts a cluster.
func startCluster(ctx context.Context, bin binaries) (*Cluster, error) {
	sweepStale(os.TempDir())
	dir, err := os.MkdirTemp("", clusterPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{bin: bin, dir: dir}
	if err := c.init(ctx); err != nil {
		c.remove()
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			c.remove()
			return nil, fmt.Errorf("pgtest: find a free port: %w", err)
		}
		c.port = port
		err = c.start(ctx)
		if err == nil {
			return c, nil
		}
		// Another process may have taken the port between our probe and
		// the server's bind; try a new one a few times.
		if attempt < 3 && strings.Contains(err.Error(), "could not bind") {
			continue
		}
		c.remove()
		return nil, err
	}
}

func (c *Cluster) init(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	for _, d := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o700); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	// PostgreSQL refuses to run as root, so as root the cluster belongs to
	// an unprivileged user.
	if os.Geteuid() == 0 {
		c.cred = unprivileged()
		for _, p := range []string{c.dir, filepath.Join(c.dir, "data"), filepath.Join(c.dir, "sock")} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
		}
		// The folder must be reachable by that user.
		if err := os.Chmod(c.dir, 0o755); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, c.bin.initdb, "-D", filepath.Join(c.dir, "data"), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: %s failed: %w\n%s", c.bin.initdb, err, tail(out, 20))
	}
	return nil
}

// unprivileged returns the credentials of the user nobody.
func unprivileged() *syscall.Credential {
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }

// AdminURL is the superuser URL of the cluster's maintenance database.
func (c *Cluster) AdminURL() string {
	return "postgres://postgres@" + c.addr() + "/postgres?sslmode=disable"
}

// URL creates a new, empty database on the cluster and returns its URL.
// The database goes with the cluster.
func (c *Cluster) URL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	name := "caracal_test_" + randomHex(8)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	u, err := withDatabase(c.AdminURL(), name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Stop shuts the server down (fast shutdown: connections are cut) and
// waits until it has exited. The data stays, so Start brings it back.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts a stopped server again on the same port and waits until it
// accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.start(ctx); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) start(ctx context.Context) error {
	c.mu.Lock()
	if c.cmd != nil {
		c.mu.Unlock()
		return errors.New("pgtest: the server is already running")
	}
	logPath := filepath.Join(c.dir, "postgres.log")
	exited, err := c.spawn(logPath)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, c.AdminURL())
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			c.mu.Lock()
			c.cmd, c.exited = nil, nil
			c.mu.Unlock()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgtest: %s exited while starting: %s", c.bin.postgres, tail(out, 20))
		case <-ctx.Done():
			_ = c.stop()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgtest: %s did not accept connections: %w\n%s", c.bin.postgres, err, tail(out, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// spawn starts the server process; c.mu must be held.
func (c *Cluster) spawn(logPath string) (<-chan struct{}, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin.postgres,
		"-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(c.port),
		"-k", filepath.Join(c.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		// Durability is not under test here; speed is welcome.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
	)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		// If the test binary dies, even by SIGKILL, the server does an
		// immediate shutdown rather than outliving it.
		Pdeathsig: syscall.SIGQUIT,
		// Keep a terminal's ^C for the test binary, which then takes the
		// server down with it.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start %s: %w", c.bin.postgres, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited
	return exited, nil
}

func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd, c.exited = nil, nil
	return nil
}

// remove stops the server and deletes the cluster's folder.
func (c *Cluster) remove() {
	_ = c.stop()
	_ = os.RemoveAll(c.dir)
}

// sweepStale removes the cluster folders of earlier runs that were killed
// before they could clean up, stopping any server still running in them.
func sweepStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, clusterPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			fi, serr := os.Stat(d)
			if serr == nil && fi.IsDir() && time.Since(fi.ModTime()) > staleAge {
				_ = os.RemoveAll(d)
			}
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && alive(pid) && isPostgres(pid) {
				_ = syscall.Kill(pid, syscall.SIGQUIT)
			}
		}
		_ = os.RemoveAll(d)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isPostgres(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "postgres")
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
