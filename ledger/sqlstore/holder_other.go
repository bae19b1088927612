//go:build !unix

package sqlstore

// processGone cannot tell here; holders are reclaimed after their TTL.
func processGone(int) bool { return false }
