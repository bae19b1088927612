package policy

import "time"

// BucketStart returns the start of the usage bucket that a spend at t is
// recorded in for p: the start of the calendar window containing t (in p's
// time zone), the epoch for a total window, or t truncated to the minute for
// a rolling window.
func BucketStart(p Policy, t time.Time) (time.Time, error) {
	panic("policy.BucketStart: not implemented yet")
}

// WindowStart returns the earliest bucket start that counts towards p at
// time now: usage is the sum of every bucket with start ≥ WindowStart.
func WindowStart(p Policy, now time.Time) (time.Time, error) {
	panic("policy.WindowStart: not implemented yet")
}
