package policy

import "time"

// BucketStart is BucketStartIn with p's zone loaded on every call: the
// reference the tests hold Zones.BucketStart to.
func BucketStart(p Policy, t time.Time) (time.Time, error) {
	loc, err := policyLocation(p)
	if err != nil {
		return time.Time{}, err
	}
	return BucketStartIn(p, loc, t)
}
