package interpose

import "time"

// ReservationTTL is how long a reservation must stay open for a call that
// may take up to longest (its whole exchange and drain): at least the
// default, and a minute beyond longest, so that the expiry sweep never
// settles a call that is still running as unconfirmed.
func ReservationTTL(longest time.Duration) time.Duration {
	return max(DefaultReservationTTL, longest+time.Minute)
}
