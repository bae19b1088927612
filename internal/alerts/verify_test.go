package alerts

import (
	"crypto/hmac"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Verify checks a Caracal-Signature value against body and secret, and
// that its timestamp is within tolerance of now (0: not checked). It is what
// a receiver does; docs/operations.md shows the same in Python and shell.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("malformed %s header %q", SignatureHeader, header)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("signature timestamp %d is %s away from now", sec, d.Round(time.Second))
		}
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	for _, s := range sigs {
		if hmac.Equal([]byte("t="+ts+",v1="+s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("signature mismatch")
}
