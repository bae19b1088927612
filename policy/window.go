package policy

import (
	"fmt"
	"sync"
	"time"
)

// Rolling window durations.
const (
	rollingHour  = time.Hour
	rollingDay   = 24 * time.Hour
	rollingWeek  = 7 * rollingDay
	rollingMonth = 30 * rollingDay
	// rollingGranularity is the width of one rolling usage bucket.
	rollingGranularity = time.Minute
)

// epoch is the single bucket of a total window.
var epoch = time.Unix(0, 0).UTC()

// WindowStart returns the earliest bucket start that counts towards p at
// time now: usage is the sum of every bucket with start ≥ WindowStart.
//
// For calendar and total windows that is the bucket start of now. For a rolling
// window it is now truncated to the minute, minus the window's duration,
// plus one minute (see "Windows" in the package documentation).
func WindowStart(p Policy, now time.Time) (time.Time, error) {
	loc, err := policyLocation(p)
	if err != nil {
		return time.Time{}, err
	}
	return WindowStartIn(p, loc, now)
}

// BucketStartIn returns the start of the usage bucket that a spend at t is
// recorded in for p: the start of the calendar window containing t (in
// loc, which stands for p.Timezone), the epoch for a total window, or t
// truncated to the minute for a rolling window. An empty WindowType means
// calendar. Zones.BucketStart loads loc from p.
func BucketStartIn(p Policy, loc *time.Location, t time.Time) (time.Time, error) {
	if p.Window == WindowTotal {
		if err := checkWindowType(p.WindowType); err != nil {
			return time.Time{}, err
		}
		return epoch, nil
	}
	if _, err := ParseWindow(string(p.Window)); err != nil {
		return time.Time{}, err
	}
	wt, err := ParseWindowType(string(p.WindowType))
	if err != nil {
		return time.Time{}, err
	}
	if wt == WindowRolling {
		return t.Truncate(rollingGranularity).UTC(), nil
	}
	if loc == nil {
		loc = time.UTC
	}
	if loc == time.UTC && p.Window != WindowHourly {
		// No offset changes: local midnight is always the day's start.
		y, m, d := t.UTC().Date()
		switch p.Window {
		case WindowWeekly:
			d -= (int(t.UTC().Weekday()) + 6) % 7
		case WindowMonthly:
			d = 1
		}
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	}
	return calendarStart(p.Window, t.In(loc)), nil
}

// WindowStartIn is WindowStart with p's time zone already loaded; loc is
// used in place of p.Timezone.
func WindowStartIn(p Policy, loc *time.Location, now time.Time) (time.Time, error) {
	start, err := BucketStartIn(p, loc, now)
	if err != nil || p.Window == WindowTotal || p.WindowType != WindowRolling {
		return start, err
	}
	return start.Add(rollingGranularity - rollingDuration(p.Window)), nil
}

// calendarStart returns the start of the calendar window w containing t,
// where t is already in the policy's location.
func calendarStart(w Window, t time.Time) time.Time {
	if w == WindowHourly {
		// Subtracting the local minutes keeps the offset in force at t, so
		// the two 01:00 hours of a fall-back night stay distinct windows
		// (time.Date would pick one of them arbitrarily).
		_, min, sec := t.Clock()
		return t.Add(-(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second + time.Duration(t.Nanosecond())))
	}
	y, m, d := t.Date()
	switch w {
	case WindowWeekly:
		d -= (int(t.Weekday()) + 6) % 7 // days since Monday; time.Date normalises d < 1
	case WindowMonthly:
		d = 1
	}
	return dayStart(y, m, d, t.Location())
}

// dayStart returns the first instant of local day y-m-d in loc.
//
// That is local midnight, except where a zone changes its offset at
// midnight. time.Date is free to pick either side of such a change, so the
// answer is corrected to the earliest instant whose local date is the day:
// the moment of the change when midnight is skipped, the first of two
// midnights when it repeats.
func dayStart(y int, m time.Month, d int, loc *time.Location) time.Time {
	start := time.Date(y, m, d, 0, 0, 0, 0, loc)
	day := civilDay(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
	if civilDay(start) != day {
		// Landed on the day before: midnight was skipped, and the day
		// begins when the zone period holding start ends.
		if _, end := start.ZoneBounds(); !end.IsZero() {
			return end
		}
		return start
	}
	zoneStart, _ := start.ZoneBounds()
	if zoneStart.IsZero() || !zoneStart.After(start.Add(-24*time.Hour)) {
		return start // no offset change near this midnight
	}
	if h, mi, s := start.Clock(); h != 0 || mi != 0 || s != 0 {
		// Landed after a skipped midnight: the day began with the change.
		return zoneStart
	}
	// Midnight exists; if it also existed under the previous offset (a
	// repeated hour just after midnight), the earlier one starts the day.
	before := zoneStart.Add(-time.Nanosecond)
	if civilDay(before) == day {
		_, prev := before.Zone()
		_, cur := start.Zone()
		return start.Add(time.Duration(cur-prev) * time.Second)
	}
	return start
}

// civilDay packs a time's local date into a comparable number.
func civilDay(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}

// rollingDuration is the length of a rolling window.
func rollingDuration(w Window) time.Duration {
	switch w {
	case WindowHourly:
		return rollingHour
	case WindowDaily:
		return rollingDay
	case WindowWeekly:
		return rollingWeek
	default:
		return rollingMonth
	}
}

// checkWindowType validates a window type without needing its value.
func checkWindowType(wt WindowType) error {
	_, err := ParseWindowType(string(wt))
	return err
}

func policyLocation(p Policy) (*time.Location, error) {
	if p.Window == WindowTotal || p.WindowType == WindowRolling {
		// The zone plays no part; a bad one is still reported by
		// ValidatePolicy, not here, so that usage of an existing policy
		// stays readable.
		return time.UTC, nil
	}
	return LoadLocation(p.Timezone)
}

// Zones loads time zones once and keeps them, so that bucketing a spend
// does not read the time zone database each time. A store holds one for
// its lifetime. The zero value is ready to use; a Zones is safe for
// concurrent use. Only zones that loaded are kept.
type Zones struct {
	mu  sync.RWMutex
	loc map[string]*time.Location
}

// Load is LoadLocation, remembering each zone it loads.
func (z *Zones) Load(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	z.mu.RLock()
	loc, ok := z.loc[name]
	z.mu.RUnlock()
	if ok {
		return loc, nil
	}
	loc, err := LoadLocation(name)
	if err != nil {
		return nil, err
	}
	z.mu.Lock()
	if z.loc == nil {
		z.loc = make(map[string]*time.Location)
	}
	z.loc[name] = loc
	z.mu.Unlock()
	return loc, nil
}

// BucketStart is BucketStartIn with p's zone (empty: UTC) loaded through
// z, so a caller deciding often does not read the time zone database on
// every call.
func (z *Zones) BucketStart(p Policy, t time.Time) (time.Time, error) {
	loc, err := z.policyLocation(p)
	if err != nil {
		return time.Time{}, err
	}
	return BucketStartIn(p, loc, t)
}

// WindowStart is the package's WindowStart with p's zone loaded through z.
func (z *Zones) WindowStart(p Policy, now time.Time) (time.Time, error) {
	loc, err := z.policyLocation(p)
	if err != nil {
		return time.Time{}, err
	}
	return WindowStartIn(p, loc, now)
}

func (z *Zones) policyLocation(p Policy) (*time.Location, error) {
	if p.Window == WindowTotal || p.WindowType == WindowRolling {
		return time.UTC, nil
	}
	return z.Load(p.Timezone)
}

// ParseWindow reads a window name.
func ParseWindow(s string) (Window, error) {
	switch w := Window(s); w {
	case WindowTotal, WindowHourly, WindowDaily, WindowWeekly, WindowMonthly:
		return w, nil
	}
	return "", fmt.Errorf("invalid window %q: want one of total, hourly, daily, weekly, monthly", s)
}

// ParseWindowType reads a window type; empty means calendar.
func ParseWindowType(s string) (WindowType, error) {
	switch wt := WindowType(s); wt {
	case WindowCalendar, WindowRolling:
		return wt, nil
	case "":
		return WindowCalendar, nil
	}
	return "", fmt.Errorf("invalid window type %q: want calendar or rolling", s)
}

// LoadLocation loads an IANA time zone such as "Europe/Paris"; empty and
// "UTC" mean UTC. "Local" is refused: a budget must not change meaning with
// the machine that enforces it. Zones other than UTC are read from the
// system's time zone database (or one embedded in the program with
// time/tzdata).
func LoadLocation(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("invalid time zone %q: want an IANA name such as Europe/Paris or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("invalid time zone %q: %w", name, err)
	}
	return loc, nil
}
