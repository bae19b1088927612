package interpose

import (
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, want string
		ok           bool
	}{
		{"Bearer crk_abc", "crk_abc", true},
		{"bearer crk_abc", "crk_abc", true},
		{"BEARER  crk_abc ", "crk_abc", true},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearercrk_abc", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := BearerToken(tc.header)
		if got != tc.want || ok != tc.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReservationTTL(t *testing.T) {
	tests := []struct {
		longest, want time.Duration
	}{
		{time.Minute, DefaultReservationTTL},
		{15*time.Minute + 15*time.Second, 16*time.Minute + 15*time.Second},
		{time.Hour, time.Hour + time.Minute},
	}
	for _, tc := range tests {
		if got := ReservationTTL(tc.longest); got != tc.want {
			t.Errorf("ReservationTTL(%s) = %s, want %s", tc.longest, got, tc.want)
		}
	}
}
