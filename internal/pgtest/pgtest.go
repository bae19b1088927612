// Package pgtest gives tests a real PostgreSQL: the server named by
// CARACAL_TEST_DATABASE_URL if it is set, otherwise one throwaway cluster per
// test binary, created with the local initdb and run from the same
// installation in a temporary folder, on a free localhost port, and removed
// when the binary exits. Every call to URL gets a fresh, empty database.
//
// Without a URL and without the binaries the tests fail with a message
// saying how to provide one; they never skip.
//
// A package using URL should route its TestMain through Main, so the
// cluster is stopped and removed when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// To test what happens when the database goes away, NewRelay puts a TCP
// relay that can be cut in front of any server (the shared one included,
// without disturbing other tests), and NewCluster starts a private cluster
// that a test may Stop and Start.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvURL names the variable that points the tests at an existing server.
// Its role must be allowed to create databases.
const EnvURL = "CARACAL_TEST_DATABASE_URL"

// HowTo is the failure message when no server can be had.
const HowTo = "PostgreSQL tests need a server: set " + EnvURL + "=postgres://… or put PostgreSQL's initdb and pg_ctl on PATH"

// shared is the server every URL call in this test binary uses. It is
// started at most once, lazily, and stopped by Main.
var shared struct {
	once sync.Once
	srv  *server
	err  error
}

// server is a PostgreSQL server the tests may create databases on.
type server struct {
	admin   string // superuser URL of the maintenance database
	desc    string // what Describe prints
	cluster *Cluster
	pool    *pgxpool.Pool
}

func getShared() (*server, error) {
	shared.once.Do(func() {
		shared.srv, shared.err = startShared()
		if shared.err == nil {
			fmt.Println(shared.srv.desc)
		}
	})
	return shared.srv, shared.err
}

func startShared() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if u := os.Getenv(EnvURL); u != "" {
		return connect(ctx, u, nil, EnvURL)
	}
	bin, err := findBinaries(os.Getenv("PATH"), defaultInstallGlobs)
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, bin)
	if err != nil {
		return nil, err
	}
	s, err := connect(ctx, c.AdminURL(), c, "")
	if err != nil {
		c.remove()
		return nil, err
	}
	return s, nil
}

// connect opens the admin pool of a server and describes it.
func connect(ctx context.Context, adminURL string, c *Cluster, from string) (*server, error) {
	cfg, err := pgxpool.ParseConfig(adminURL)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s is not a PostgreSQL URL: %w", redact(adminURL), err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to %s: %w", redact(adminURL), err)
	}
	var version string
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version')`).Scan(&version); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgtest: connect to %s: %w", redact(adminURL), err)
	}
	if f := strings.Fields(version); len(f) > 0 {
		version = f[0] // "15.18 (Debian 15.18-0+deb12u1)" names its packager too
	}
	s := &server{admin: adminURL, cluster: c, pool: pool}
	if c != nil {
		s.desc = fmt.Sprintf("pgtest: PostgreSQL %s throwaway cluster at %s (data in %s)", version, c.addr(), c.dir)
	} else {
		s.desc = fmt.Sprintf("pgtest: PostgreSQL %s server from %s at %s", version, from, redact(adminURL))
	}
	return s, nil
}

// Main runs the tests, then stops and removes the throwaway cluster, and
// exits with the tests' status.
func Main(m *testing.M) {
	code := m.Run()
	stopShared()
	os.Exit(code)
}

func stopShared() {
	if shared.srv == nil {
		return
	}
	shared.srv.pool.Close()
	if shared.srv.cluster != nil {
		shared.srv.cluster.remove()
	}
}

// Describe returns the line that names the server the tests use, starting it
// if need be, for tests that want it in their own output.
func Describe(t testing.TB) string {
	t.Helper()
	s, err := getShared()
	if err != nil {
		t.Fatal(err)
	}
	return s.desc
}

// URL returns the URL of a new, empty database on the shared server, owned
// by the test and dropped when the test ends. It fails the test with HowTo
// when there is no server to be had.
func URL(t testing.TB) string {
	t.Helper()
	s, err := getShared()
	if err != nil {
		t.Fatal(err)
	}
	return s.newDatabase(t)
}

// AdminURL returns a superuser URL of the shared server's maintenance
// database, for tests that must look behind the application's back.
func AdminURL(t testing.TB) string {
	t.Helper()
	s, err := getShared()
	if err != nil {
		t.Fatal(err)
	}
	return s.admin
}

func (s *server) newDatabase(t testing.TB) string {
	t.Helper()
	name := "caracal_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v (the role in %s needs the CREATEDB privilege)", name, err, EnvURL)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, s.pool, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	u, err := withDatabase(s.admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// dropDatabase drops a database even while connections remain, which a
// test that failed halfway may leave behind.
func dropDatabase(ctx context.Context, pool *pgxpool.Pool, name string) error {
	id := pgx.Identifier{name}.Sanitize()
	_, err := pool.Exec(ctx, `DROP DATABASE IF EXISTS `+id+` WITH (FORCE)`)
	if err != nil {
		// Servers before PostgreSQL 13 know no FORCE.
		if _, err2 := pool.Exec(ctx, `DROP DATABASE IF EXISTS `+id); err2 != nil {
			return fmt.Errorf("drop database %s: %w", name, errors.Join(err, err2))
		}
	}
	return nil
}

// withDatabase returns u with its database replaced by name.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", redact(u), err)
	}
	p.Path = "/" + name
	p.RawPath = ""
	return p.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// redact hides a password in a URL.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxxxx")
	}
	return p.String()
}
