//go:build unix

package mcp

import (
	"os/exec"
	"path/filepath"
	"syscall"
)

// setProcessGroup puts the child in its own process group so that stopping
// it also stops what it spawned (npx, uvx and shells start grandchildren).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

func filepathList(p string) []string { return filepath.SplitList(p) }
