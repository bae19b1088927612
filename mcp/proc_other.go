//go:build !unix

package mcp

import (
	"os/exec"
	"path/filepath"
)

func setProcessGroup(*exec.Cmd) {}

func killProcess(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func filepathList(p string) []string { return filepath.SplitList(p) }
