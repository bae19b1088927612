package errkind_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/caracal-dev/caracal/internal/errkind"
)

var errKind = errors.New("kind")

func TestNew(t *testing.T) {
	cause := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	tests := []struct {
		name    string
		err     error
		msg     string
		matches []error
		not     []error
	}{
		{"kind only", errkind.New(errKind, "agent \"x\" not found"), `agent "x" not found`, []error{errKind}, []error{fs.ErrNotExist}},
		{"with cause", errkind.New(errKind, "bad file", cause), "bad file", []error{errKind, fs.ErrNotExist}, nil},
		{"nil cause ignored", errkind.New(errKind, "m", nil), "m", []error{errKind}, nil},
		{"formatted", errkind.Errorf(errKind, "policy %q is inactive", "p1"), `policy "p1" is inactive`, []error{errKind}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.msg {
				t.Errorf("message %q, want %q", got, tc.msg)
			}
			for _, m := range tc.matches {
				if !errors.Is(tc.err, m) {
					t.Errorf("errors.Is(%v) = false", m)
				}
			}
			for _, m := range tc.not {
				if errors.Is(tc.err, m) {
					t.Errorf("errors.Is(%v) = true", m)
				}
			}
		})
	}
	var pe *fs.PathError
	if !errors.As(errkind.New(errKind, "m", cause), &pe) || pe != cause {
		t.Errorf("errors.As does not find the cause")
	}
}
