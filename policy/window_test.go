package policy

import (
	"strings"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestBucketStart(t *testing.T) {
	cal := func(w Window, tz string) Policy { return Policy{Window: w, WindowType: WindowCalendar, Timezone: tz} }
	roll := func(w Window) Policy {
		return Policy{Window: w, WindowType: WindowRolling, Timezone: "America/New_York"}
	}
	tests := []struct {
		name string
		p    Policy
		at   string // RFC 3339
		want string // RFC 3339, in UTC
	}{
		{"total", cal(WindowTotal, "UTC"), "2026-11-26T10:11:12Z", "1970-01-01T00:00:00Z"},
		{"total ignores zone", cal(WindowTotal, "Asia/Tokyo"), "2026-11-26T10:11:12Z", "1970-01-01T00:00:00Z"},
		{"total calendar zero type", Policy{Window: WindowTotal}, "2026-11-26T10:11:12Z", "1970-01-01T00:00:00Z"},

		{"hourly UTC", cal(WindowHourly, "UTC"), "2026-11-26T10:59:59.999Z", "2026-11-26T10:00:00Z"},
		{"hourly on the hour", cal(WindowHourly, "UTC"), "2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"},
		{"hourly half-hour zone", cal(WindowHourly, "Asia/Kolkata"), "2026-11-26T05:15:00Z", "2026-11-26T04:30:00Z"},
		{"hourly first 01:00 of fall-back night", cal(WindowHourly, "America/New_York"), "2026-11-01T05:30:00Z", "2026-11-01T05:00:00Z"},
		{"hourly second 01:00 of fall-back night", cal(WindowHourly, "America/New_York"), "2026-11-01T06:30:00Z", "2026-11-01T06:00:00Z"},
		{"hourly after spring-forward", cal(WindowHourly, "America/New_York"), "2026-03-08T07:10:00Z", "2026-03-08T07:00:00Z"},

		{"daily UTC last second", cal(WindowDaily, "UTC"), "2026-11-25T23:59:59Z", "2026-11-25T00:00:00Z"},
		{"daily UTC midnight", cal(WindowDaily, "UTC"), "2026-11-26T00:00:00Z", "2026-11-26T00:00:00Z"},
		{"daily empty zone is UTC", Policy{Window: WindowDaily}, "2026-11-26T13:00:00Z", "2026-11-26T00:00:00Z"},
		{"daily Tokyo", cal(WindowDaily, "Asia/Tokyo"), "2026-11-26T14:59:59Z", "2026-11-25T15:00:00Z"},
		{"daily Tokyo next day", cal(WindowDaily, "Asia/Tokyo"), "2026-11-26T15:00:00Z", "2026-11-26T15:00:00Z"},
		// 2026-03-08 in New York is 23 hours long: 00:00 EST (05:00Z) to
		// 00:00 EDT the next day (04:00Z).
		{"NY spring day before midnight", cal(WindowDaily, "America/New_York"), "2026-03-08T04:59:59Z", "2026-03-07T05:00:00Z"},
		{"NY spring day midnight", cal(WindowDaily, "America/New_York"), "2026-03-08T05:00:00Z", "2026-03-08T05:00:00Z"},
		{"NY spring day after the jump", cal(WindowDaily, "America/New_York"), "2026-03-08T07:00:00Z", "2026-03-08T05:00:00Z"},
		{"NY spring day last second", cal(WindowDaily, "America/New_York"), "2026-03-09T03:59:59Z", "2026-03-08T05:00:00Z"},
		{"NY day after spring", cal(WindowDaily, "America/New_York"), "2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z"},
		// 2026-11-01 is 25 hours long: 00:00 EDT (04:00Z) to 00:00 EST
		// the next day (05:00Z).
		{"NY fall day before midnight", cal(WindowDaily, "America/New_York"), "2026-11-01T03:59:59Z", "2026-10-31T04:00:00Z"},
		{"NY fall day midnight", cal(WindowDaily, "America/New_York"), "2026-11-01T04:00:00Z", "2026-11-01T04:00:00Z"},
		{"NY fall day repeated hour", cal(WindowDaily, "America/New_York"), "2026-11-01T06:30:00Z", "2026-11-01T04:00:00Z"},
		{"NY fall day last second", cal(WindowDaily, "America/New_York"), "2026-11-02T04:59:59Z", "2026-11-01T04:00:00Z"},
		{"NY day after fall", cal(WindowDaily, "America/New_York"), "2026-11-02T05:00:00Z", "2026-11-02T05:00:00Z"},
		// Zones that change offset at midnight itself.
		{"Havana skipped midnight", cal(WindowDaily, "America/Havana"), "2025-03-09T12:00:00Z", "2025-03-09T05:00:00Z"},
		{"Havana day before skipped midnight", cal(WindowDaily, "America/Havana"), "2025-03-09T04:59:59Z", "2025-03-08T05:00:00Z"},
		{"Havana repeated midnight hour", cal(WindowDaily, "America/Havana"), "2025-11-02T05:30:00Z", "2025-11-02T04:00:00Z"},
		{"Sao Paulo skipped midnight", cal(WindowDaily, "America/Sao_Paulo"), "2018-11-04T12:00:00Z", "2018-11-04T03:00:00Z"},
		{"Beirut midnight after fall-back", cal(WindowDaily, "Asia/Beirut"), "2025-10-26T12:00:00Z", "2025-10-25T22:00:00Z"},
		{"Amman repeated midnight, time.Date picks the later", cal(WindowDaily, "Asia/Amman"), "1996-09-20T12:00:00Z", "1996-09-19T21:00:00Z"},
		{"Beirut 25-hour day", cal(WindowDaily, "Asia/Beirut"), "2025-10-25T21:59:59Z", "2025-10-24T21:00:00Z"},

		{"weekly Thursday", cal(WindowWeekly, "UTC"), "2026-11-26T10:00:00Z", "2026-11-23T00:00:00Z"},
		{"weekly Sunday night", cal(WindowWeekly, "UTC"), "2026-11-29T23:59:59Z", "2026-11-23T00:00:00Z"},
		{"weekly Monday midnight", cal(WindowWeekly, "UTC"), "2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z"},
		{"weekly across a month", cal(WindowWeekly, "UTC"), "2026-10-01T10:00:00Z", "2026-09-28T00:00:00Z"},
		{"weekly across a year", cal(WindowWeekly, "UTC"), "2027-01-01T10:00:00Z", "2026-12-28T00:00:00Z"},
		{"weekly across spring-forward", cal(WindowWeekly, "America/New_York"), "2026-03-08T20:00:00Z", "2026-03-02T05:00:00Z"},
		{"weekly after spring-forward", cal(WindowWeekly, "America/New_York"), "2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z"},

		{"monthly", cal(WindowMonthly, "UTC"), "2026-11-26T10:00:00Z", "2026-11-01T00:00:00Z"},
		{"monthly first instant", cal(WindowMonthly, "UTC"), "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"monthly last instant", cal(WindowMonthly, "UTC"), "2026-11-30T23:59:59.999999999Z", "2026-11-01T00:00:00Z"},
		{"monthly leap February", cal(WindowMonthly, "UTC"), "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z"},
		{"monthly NY November starts in EDT", cal(WindowMonthly, "America/New_York"), "2026-12-01T04:30:00Z", "2026-11-01T04:00:00Z"},
		{"monthly NY December starts in EST", cal(WindowMonthly, "America/New_York"), "2026-12-01T05:00:00Z", "2026-12-01T05:00:00Z"},

		{"rolling minute", roll(WindowDaily), "2026-11-26T12:34:56.789Z", "2026-11-26T12:34:00Z"},
		{"rolling on the minute", roll(WindowHourly), "2026-11-26T12:34:00Z", "2026-11-26T12:34:00Z"},
		{"rolling monthly", roll(WindowMonthly), "2026-11-26T12:34:59.999999999Z", "2026-11-26T12:34:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BucketStart(tt.p, utc(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(utc(tt.want)) {
				t.Fatalf("BucketStart(%s) = %s, want %s", tt.at, got.UTC().Format(time.RFC3339Nano), tt.want)
			}
		})
	}
}

func TestWindowStart(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		now  string
		want string
	}{
		{"total", Policy{Window: WindowTotal, WindowType: WindowCalendar}, "2026-11-26T12:00:00Z", "1970-01-01T00:00:00Z"},
		{"calendar daily", Policy{Window: WindowDaily, WindowType: WindowCalendar, Timezone: "America/New_York"}, "2026-03-08T20:00:00Z", "2026-03-08T05:00:00Z"},
		{"calendar monthly", Policy{Window: WindowMonthly, WindowType: WindowCalendar}, "2026-11-26T12:00:00Z", "2026-11-01T00:00:00Z"},
		{"rolling hourly", Policy{Window: WindowHourly, WindowType: WindowRolling}, "2026-11-26T12:00:30Z", "2026-11-26T11:01:00Z"},
		{"rolling daily", Policy{Window: WindowDaily, WindowType: WindowRolling}, "2026-11-26T12:00:30Z", "2026-11-25T12:01:00Z"},
		{"rolling daily on the minute", Policy{Window: WindowDaily, WindowType: WindowRolling}, "2026-11-26T12:00:00Z", "2026-11-25T12:01:00Z"},
		{"rolling weekly", Policy{Window: WindowWeekly, WindowType: WindowRolling}, "2026-11-26T12:00:30Z", "2026-11-19T12:01:00Z"},
		{"rolling monthly is 30 days", Policy{Window: WindowMonthly, WindowType: WindowRolling}, "2026-11-26T12:00:30Z", "2026-10-27T12:01:00Z"},
		// Rolling windows are durations, blind to the zone and to DST.
		{"rolling daily across DST", Policy{Window: WindowDaily, WindowType: WindowRolling, Timezone: "America/New_York"}, "2026-03-08T12:00:00Z", "2026-03-07T12:01:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WindowStart(tt.p, utc(tt.now))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(utc(tt.want)) {
				t.Fatalf("WindowStart(%s) = %s, want %s", tt.now, got.UTC().Format(time.RFC3339Nano), tt.want)
			}
		})
	}
}

// counted reports whether a spend at spentAt counts towards p at now, as a
// store summing buckets with start ≥ WindowStart would see it.
func counted(t *testing.T, p Policy, spentAt, now time.Time) bool {
	t.Helper()
	b, err := BucketStart(p, spentAt)
	if err != nil {
		t.Fatal(err)
	}
	w, err := WindowStart(p, now)
	if err != nil {
		t.Fatal(err)
	}
	return !b.Before(w)
}

func TestWindowCounts(t *testing.T) {
	daily := func(tz string) Policy { return Policy{Window: WindowDaily, WindowType: WindowCalendar, Timezone: tz} }
	rolling24 := Policy{Window: WindowDaily, WindowType: WindowRolling}
	ny := mustLoc(t, "America/New_York")
	local := func(y int, m time.Month, d, h, mi, s int) time.Time { return time.Date(y, m, d, h, mi, s, 0, ny) }
	tests := []struct {
		name         string
		p            Policy
		spent, now   time.Time
		wantCounted  bool
		wantNoChange bool // the spend's own bucket is the window start
	}{
		{"UTC yesterday 23:59:59", daily("UTC"), utc("2026-11-25T23:59:59Z"), utc("2026-11-26T09:00:00Z"), false, false},
		{"UTC today 00:00:00", daily("UTC"), utc("2026-11-26T00:00:00Z"), utc("2026-11-26T09:00:00Z"), true, true},
		{"UTC today 00:00:00 at midnight", daily("UTC"), utc("2026-11-26T00:00:00Z"), utc("2026-11-26T00:00:00Z"), true, true},
		{"NY spring: yesterday 23:59:59", daily("America/New_York"), local(2026, 3, 7, 23, 59, 59), local(2026, 3, 8, 12, 0, 0), false, false},
		{"NY spring: today 00:00:00", daily("America/New_York"), local(2026, 3, 8, 0, 0, 0), local(2026, 3, 8, 12, 0, 0), true, true},
		{"NY spring: next day excludes 23:59:59", daily("America/New_York"), local(2026, 3, 8, 23, 59, 59), local(2026, 3, 9, 0, 0, 0), false, false},
		{"NY fall: yesterday 23:59:59", daily("America/New_York"), local(2026, 10, 31, 23, 59, 59), local(2026, 11, 1, 12, 0, 0), false, false},
		{"NY fall: today 00:00:00", daily("America/New_York"), local(2026, 11, 1, 0, 0, 0), local(2026, 11, 1, 23, 59, 59), true, true},
		{"NY fall: next day excludes 23:59:59", daily("America/New_York"), local(2026, 11, 1, 23, 59, 59), local(2026, 11, 2, 0, 0, 0), false, false},
		// Rolling 24 h at now = 12:00:30: buckets from 12:01 yesterday count.
		{"rolling 24h: bucket 12:00 yesterday", rolling24, utc("2026-11-25T12:00:59Z"), utc("2026-11-26T12:00:30Z"), false, false},
		{"rolling 24h: bucket 12:01 yesterday", rolling24, utc("2026-11-25T12:01:00Z"), utc("2026-11-26T12:00:30Z"), true, true},
		{"rolling 24h: this minute", rolling24, utc("2026-11-26T12:00:00Z"), utc("2026-11-26T12:00:30Z"), true, false},
		// A spend stops counting exactly when the minute 24 h after its own
		// minute begins.
		{"rolling 24h: last instant", rolling24, utc("2026-11-25T12:00:45Z"), utc("2026-11-26T11:59:59.999999999Z"), true, true},
		{"rolling 24h: first instant out", rolling24, utc("2026-11-25T12:00:45Z"), utc("2026-11-26T12:00:00Z"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := counted(t, tt.p, tt.spent, tt.now); got != tt.wantCounted {
				t.Fatalf("spend at %s counted at %s = %v, want %v", tt.spent, tt.now, got, tt.wantCounted)
			}
			b, _ := BucketStart(tt.p, tt.spent)
			w, _ := WindowStart(tt.p, tt.now)
			if b.Equal(w) != tt.wantNoChange {
				t.Fatalf("bucket %s = window start %s: %v, want %v", b, w, b.Equal(w), tt.wantNoChange)
			}
		})
	}
}

// TestBucketInvariants walks a year in New York and in a half-hour zone
// every 7 minutes and checks what every bucketing must satisfy: a bucket
// starts at or before the spend, is its own bucket, never moves backwards,
// and starts on the boundary it claims.
func TestBucketInvariants(t *testing.T) {
	for _, tz := range []string{"America/New_York", "Australia/Adelaide", "UTC"} {
		loc := mustLoc(t, tz)
		for _, w := range []Window{WindowHourly, WindowDaily, WindowWeekly, WindowMonthly} {
			p := Policy{Window: w, WindowType: WindowCalendar, Timezone: tz}
			t.Run(tz+"/"+string(w), func(t *testing.T) {
				var prev time.Time
				for at := utc("2026-01-01T00:00:00Z"); at.Before(utc("2027-01-01T00:00:00Z")); at = at.Add(7 * time.Minute) {
					b, err := BucketStartIn(p, loc, at)
					if err != nil {
						t.Fatal(err)
					}
					if b.After(at) || at.Sub(b) > 31*24*time.Hour+time.Hour {
						t.Fatalf("BucketStart(%s) = %s", at, b)
					}
					if again, _ := BucketStartIn(p, loc, b); !again.Equal(b) {
						t.Fatalf("BucketStart(BucketStart(%s) = %s) = %s", at, b, again)
					}
					if b.Before(prev) {
						t.Fatalf("bucket went back from %s to %s at %s", prev, b, at)
					}
					prev = b
					l := b.In(loc)
					if l.Minute() != 0 || l.Second() != 0 || l.Nanosecond() != 0 {
						t.Fatalf("bucket %s is not on an hour", l)
					}
					if w != WindowHourly && l.Hour() != 0 {
						t.Fatalf("bucket %s is not at midnight", l)
					}
					if w == WindowWeekly && l.Weekday() != time.Monday {
						t.Fatalf("weekly bucket %s is not a Monday", l)
					}
					if w == WindowMonthly && l.Day() != 1 {
						t.Fatalf("monthly bucket %s is not the 1st", l)
					}
				}
			})
		}
	}
}

func TestWindowErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want string
	}{
		{"bad window", Policy{Window: "fortnightly"}, `invalid window "fortnightly": want one of total, hourly, daily, weekly, monthly`},
		{"empty window", Policy{}, `invalid window "": want one of total, hourly, daily, weekly, monthly`},
		{"bad type", Policy{Window: WindowDaily, WindowType: "sliding"}, `invalid window type "sliding": want calendar or rolling`},
		{"bad type on total", Policy{Window: WindowTotal, WindowType: "sliding"}, `invalid window type "sliding": want calendar or rolling`},
		{"bad zone", Policy{Window: WindowDaily, WindowType: WindowCalendar, Timezone: "Mars/Base"}, `invalid time zone "Mars/Base": unknown time zone Mars/Base`},
		{"local zone", Policy{Window: WindowDaily, Timezone: "Local"}, `invalid time zone "Local": want an IANA name such as Europe/Paris or UTC`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := utc("2026-11-26T12:00:00Z")
			if _, err := BucketStart(tt.p, at); err == nil || err.Error() != tt.want {
				t.Errorf("BucketStart error = %v, want %q", err, tt.want)
			}
			if _, err := WindowStart(tt.p, at); err == nil || err.Error() != tt.want {
				t.Errorf("WindowStart error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	for _, w := range []string{"total", "hourly", "daily", "weekly", "monthly"} {
		got, err := ParseWindow(w)
		if err != nil || string(got) != w {
			t.Errorf("ParseWindow(%q) = %q, %v", w, got, err)
		}
	}
	for _, bad := range []string{"", "Daily", "fortnightly", " daily"} {
		_, err := ParseWindow(bad)
		want := `invalid window "` + bad + `": want one of total, hourly, daily, weekly, monthly`
		if err == nil || err.Error() != want {
			t.Errorf("ParseWindow(%q) error = %v, want %q", bad, err, want)
		}
	}
	typeTests := []struct {
		in   string
		want WindowType
		err  string
	}{
		{"calendar", WindowCalendar, ""},
		{"rolling", WindowRolling, ""},
		{"", WindowCalendar, ""},
		{"Rolling", "", `invalid window type "Rolling": want calendar or rolling`},
		{"sliding", "", `invalid window type "sliding": want calendar or rolling`},
	}
	for _, tt := range typeTests {
		got, err := ParseWindowType(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseWindowType(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseWindowType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestLoadLocation(t *testing.T) {
	tests := []struct {
		in      string
		wantLoc string
		err     string
	}{
		{"", "UTC", ""},
		{"UTC", "UTC", ""},
		{"Europe/Paris", "Europe/Paris", ""},
		{"America/New_York", "America/New_York", ""},
		{"Mars/Base", "", `invalid time zone "Mars/Base": unknown time zone Mars/Base`},
		{"Local", "", `invalid time zone "Local": want an IANA name such as Europe/Paris or UTC`},
		{"../etc/passwd", "", `invalid time zone "../etc/passwd": `},
	}
	for _, tt := range tests {
		loc, err := LoadLocation(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) || (!strings.HasSuffix(tt.err, ": ") && err.Error() != tt.err) {
				t.Errorf("LoadLocation(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || loc.String() != tt.wantLoc {
			t.Errorf("LoadLocation(%q) = %v, %v; want %s", tt.in, loc, err, tt.wantLoc)
		}
	}
}

// TestDayStartMatchesScan checks the start of every day on which a zone
// changes its offset against a brute-force scan for the day's first
// instant, in zones that change at or near midnight, where time.Date alone
// is wrong.
func TestDayStartMatchesScan(t *testing.T) {
	zones := []string{"America/New_York", "America/Havana", "America/Sao_Paulo", "America/Santiago",
		"Asia/Amman", "Asia/Beirut", "Asia/Gaza", "Antarctica/Casey", "Australia/Lord_Howe", "Pacific/Apia"}
	checked := 0
	for _, z := range zones {
		loc := mustLoc(t, z)
		for day := utc("1995-01-01T12:00:00Z"); day.Year() <= 2026; day = day.AddDate(0, 0, 1) {
			y, m, d := day.Date()
			naive := time.Date(y, m, d, 0, 0, 0, 0, loc)
			if _, before := naive.Add(-26 * time.Hour).Zone(); func() bool { _, after := naive.Add(26 * time.Hour).Zone(); return before == after }() {
				continue // no offset change near this day
			}
			want, ok := scanDayStart(y, m, d, loc)
			if !ok {
				continue // a day the zone skipped entirely (Samoa, 2011-12-30)
			}
			checked++
			if got := dayStart(y, m, d, loc); !got.Equal(want) {
				t.Errorf("%s %04d-%02d-%02d starts at %s, want %s", z, y, m, d, got.In(loc), want.In(loc))
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d days checked", checked)
	}
}

// scanDayStart finds the first instant whose local date is y-m-d by
// stepping through time, to the second.
func scanDayStart(y int, m time.Month, d int, loc *time.Location) (time.Time, bool) {
	want := civilDay(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
	from := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Add(-16 * time.Hour)
	at := from
	for civilDay(at.In(loc)) != want {
		if at = at.Add(15 * time.Minute); at.Sub(from) > 56*time.Hour {
			return time.Time{}, false
		}
	}
	for civilDay(at.Add(-time.Second).In(loc)) == want {
		at = at.Add(-time.Second)
	}
	return at, true
}

func TestZones(t *testing.T) {
	var z Zones // the zero value is ready
	at := utc("2026-11-01T12:00:00Z")
	for _, p := range []Policy{
		{Window: WindowDaily, WindowType: WindowCalendar, Timezone: "America/New_York"},
		{Window: WindowWeekly, WindowType: WindowCalendar, Timezone: "Asia/Kolkata"},
		{Window: WindowHourly, WindowType: WindowCalendar, Timezone: "Australia/Lord_Howe"},
		{Window: WindowMonthly, WindowType: WindowCalendar},
		{Window: WindowDaily, WindowType: WindowRolling, Timezone: "Europe/Paris"},
		{Window: WindowTotal, WindowType: WindowCalendar},
	} {
		for i := 0; i < 2; i++ { // loaded, then cached
			got, err := z.BucketStart(p, at)
			want, werr := BucketStart(p, at)
			if err != nil || werr != nil || !got.Equal(want) {
				t.Fatalf("Zones.BucketStart(%+v) = %s, %v; BucketStart = %s, %v", p, got, err, want, werr)
			}
			got, err = z.WindowStart(p, at)
			want, werr = WindowStart(p, at)
			if err != nil || werr != nil || !got.Equal(want) {
				t.Fatalf("Zones.WindowStart(%+v) = %s, %v; WindowStart = %s, %v", p, got, err, want, werr)
			}
		}
	}
	if len(z.loc) != 3 {
		t.Fatalf("Zones keeps %d zones, want 3", len(z.loc))
	}
	bad := Policy{Window: WindowDaily, Timezone: "Mars/Base"}
	for i := 0; i < 2; i++ {
		if _, err := z.BucketStart(bad, at); err == nil || err.Error() != `invalid time zone "Mars/Base": unknown time zone Mars/Base` {
			t.Fatalf("Zones.BucketStart(Mars/Base) error = %v", err)
		}
		if _, err := z.WindowStart(bad, at); err == nil {
			t.Fatal("Zones.WindowStart(Mars/Base) = nil error")
		}
	}
	if len(z.loc) != 3 {
		t.Fatalf("a zone that failed to load was kept")
	}
	// Concurrent use (run with -race).
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			var local Zones
			for _, tz := range []string{"Europe/Paris", "Asia/Tokyo", "Europe/Paris"} {
				if _, err := z.Load(tz); err != nil {
					t.Error(err)
				}
				if _, err := local.Load(tz); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

func BenchmarkBucketStart(b *testing.B) {
	at := utc("2026-11-26T12:34:56Z")
	var zones Zones
	for _, tz := range []string{"UTC", "America/New_York"} {
		p := Policy{Window: WindowDaily, WindowType: WindowCalendar, Timezone: tz}
		b.Run(tz, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BucketStart(p, at); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tz+"/Zones", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := zones.BucketStart(p, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
