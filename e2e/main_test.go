// Package e2e drives the built caracal binary as a user would: real MCP
// clients and servers (from the npm packages in e2e/node), real HTTP
// clients, a real SQLite file and a real PostgreSQL server.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// binary is the caracal binary built once for the whole package.
var binary string

// nodeDir holds the npm packages the tests run (installed by `make test`).
var nodeDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "caracal-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "caracal")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/caracal")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build caracal:", err)
		return 1
	}
	nodeDir, _ = filepath.Abs("node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/node/node_modules is missing: run `make e2e-deps` (npm ci in e2e/node) first")
		return 1
	}
	return m.Run()
}
