// Package errkind builds errors whose message is exactly what a person
// should read and which still match a kind — a sentinel such as
// ledger.ErrNotFound — and any causes with errors.Is and errors.As.
//
// It replaces the small message-plus-kind types each package used to
// declare for itself: one error shape, so every front end (the CLI, an HTTP
// API) can map kinds to exit codes or statuses the same way.
package errkind

import "fmt"

// New returns an error that prints msg alone and matches kind and each of
// causes with errors.Is and errors.As. The causes' messages are not
// repeated: msg is the whole story.
func New(kind error, msg string, causes ...error) error {
	errs := make([]error, 0, 1+len(causes))
	errs = append(errs, kind)
	for _, c := range causes {
		if c != nil {
			errs = append(errs, c)
		}
	}
	return &kindError{msg: msg, errs: errs}
}

// Errorf is New with a message formatted as by fmt.Sprintf; it takes no
// causes (use New for those).
func Errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), errs: []error{kind}}
}

type kindError struct {
	msg  string
	errs []error
}

func (e *kindError) Error() string   { return e.msg }
func (e *kindError) Unwrap() []error { return e.errs }
