//go:build unix

package sqlstore

import (
	"errors"
	"syscall"
)

// processGone reports whether no process with this ID runs on this
// machine: signal 0 checks existence without sending anything.
func processGone(pid int) bool {
	return pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
